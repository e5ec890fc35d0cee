"""`framepool start` and `framepool config --check` refuse a sink configuration that cannot work, in one
line, before anything starts: options a sink would reject, and a data flow naming a sink nobody configured."""

from __future__ import annotations

import pytest

from framepool.agent.declarative import build_agents
from framepool.agent.server import check_sinks
from framepool.bridge.registry import SinkSpec
from framepool.errors import ConfigError
from framepool.settings import AgentSpec

ROUTE = {"route": [{"match": {"topic": "t"}, "to_bridges": ["votes"]}]}
MODERATE = {"moderate": [{"blocklist": ["x"], "notify_bridges": ["audit"]}]}


def test_a_data_flow_naming_an_unconfigured_sink_is_refused() -> None:
    agents = build_agents([AgentSpec(agent_name="poll", data=ROUTE)])
    with pytest.raises(ConfigError, match=r"agent poll: its data flow sends to sink .votes., .*none\)"):
        check_sinks([], agents)
    check_sinks([SinkSpec(name="votes", type="webhook", options={"url": "http://h/x"})], agents)


def test_every_stage_that_sends_to_a_sink_is_checked() -> None:
    [agent] = build_agents([AgentSpec(data=MODERATE)])
    assert agent.sinks == {"audit"}


def test_sink_options_are_checked_at_start() -> None:
    bad = SinkSpec(name="r", type="redis", options={"key": "x:{nope}"})
    with pytest.raises(ConfigError, match=r"bad sink 'r' \(redis\): key template"):
        check_sinks([bad], [])
