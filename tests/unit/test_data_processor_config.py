"""A declarative agent's `data_processors` (issue 11, item 3): "name = spec" entries, validated when the
agents are built, with the names routes send to; every mistake is one line naming where it is."""

from __future__ import annotations

from typing import Any

import pytest

from framepool.agent.declarative import build_agents
from framepool.errors import ConfigError
from framepool.settings import AgentSpec

COUNT = "tests.support.procs:CountMessages"


def agent(processors: list[str], *to_processors: list[str]) -> AgentSpec:
    routes: list[dict[str, Any]] = [
        {"name": f"r{i}", "to_processors": names} for i, names in enumerate(to_processors)
    ]
    return AgentSpec(agent_name="poll", data_processors=processors, data={"route": routes} if routes else {})


def test_named_data_processors_are_probed_at_start_with_the_agents_processors() -> None:
    [built] = build_agents([agent([f"votes = {COUNT}(label=a)", COUNT], ["votes", COUNT])])
    assert [str(spec) for spec in built.processors] == [f'{COUNT}(label="a")', COUNT]


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (agent([f"votes = {COUNT}"], ["tally"]),
         r"agents\[0\]\.data\.route\[0\] \(r0\) to_processors: no data processor named 'tally' "
         r"\(data_processors declares: votes\)"),
        (agent([], ["tally"]), r"no data processor named 'tally' \(data_processors declares: none\)"),
        (agent([f"votes = {COUNT}"]), r"agents\[0\] \(poll\) data_processors: no route sends to 'votes'"),
        (agent(["level = audio-level"], ["level"]), "'audio-level' takes audio, not data: attach it with"),
        (agent([f"votes = {COUNT}(stall_seq=x)"], ["votes"]), "bad parameter: stall_seq: Expected `int`"),
        (agent([f"a = {COUNT}", f"a = {COUNT}"], ["a"]), "data_processors: the name 'a' is given twice"),
        (agent(["votes = nowhere:Nothing"], ["votes"]), "cannot import 'nowhere'"),
    ],
)  # fmt: skip
def test_a_bad_data_processor_declaration_fails_at_start_with_one_line(spec: AgentSpec, error: str) -> None:
    with pytest.raises(ConfigError, match=error) as caught:
        build_agents([spec])
    assert "\n" not in str(caught.value)


def test_a_data_processor_among_the_audio_processors_points_to_data_processors() -> None:
    with pytest.raises(ConfigError, match=f"'{COUNT}' is a data processor: attach it with ctx.attach_data"):
        build_agents([AgentSpec(audio=[COUNT])])


def test_the_readme_data_processor_example_counts_the_last_vote_per_sender() -> None:
    from framepool.processors import DataProcessor, NoParams
    from tests.unit.test_data_slots import message
    from tests.unit.test_readme import RecordingContext, block_defining

    counter_class = block_defining("class VoteCounter")["VoteCounter"]
    assert issubclass(counter_class, DataProcessor) and counter_class.kind == "data"
    counter = counter_class(NoParams())
    ctx = RecordingContext()
    for sender, payload in (("alice", b'{"choice": "A"}'), ("bob", b'{"choice": "B"}'), ("bob", b"not json")):
        counter.process_message(message(sender=sender, payload=payload), ctx)
    counter.process_message(message(sender="bob", payload=b'{"choice": "A"}'), ctx)
    assert ctx.emitted == [
        ("poll.tally", {"A": 1}),
        ("poll.tally", {"A": 1, "B": 1}),
        ("poll.tally", {"A": 2}),
    ]
