"""/metrics of a Supervisor that has not started: every family of the issue's table with its type and unit,
no host label, bounded labels, promtool clean; the distributions and totals the collectors read."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from framepool.agent.server import AgentServer
from framepool.distribution import Distribution
from framepool.ops.metrics import CONTENT_TYPE, Metrics
from framepool.pool.contract import StreamStats
from framepool.pool.figures import FIGURES, StreamTotals
from framepool.service import Supervisor
from framepool.settings import Settings
from tests.support.metrics import FAMILIES, UNITS, families, promtool_problems, samples, value

FORBIDDEN_LABELS = {"host", "hostname", "instance", "room", "job", "job_id", "participant", "track", "stream"}


def idle_supervisor(agent_name: str = "") -> Supervisor:
    server = AgentServer(
        Settings(api_key="key", api_secret="a-secret-never-shown", livekit_url="ws://nowhere")
    )

    @server.rtc_session(agent_name=agent_name)
    async def entrypoint(ctx: object) -> None:
        del ctx

    return Supervisor(server)


async def test_every_family_is_there_with_its_type_and_unit() -> None:
    text = Metrics(idle_supervisor()).render()
    assert families(text) == FAMILIES
    for name, kind in FAMILIES.items():
        assert name.startswith("framepool_")
        if kind == "histogram":
            assert name.endswith(UNITS), name
    for family in text_string_to_metric_families(text.decode()):
        if family.type == "counter":  # every sample of a counter is named ..._total
            assert all(sample.name == family.name + "_total" for sample in family.samples), family.name
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


async def test_no_host_label_and_labels_from_fixed_sets() -> None:
    text = Metrics(idle_supervisor("transcriber")).render()
    labels = {name for (_sample, keys) in samples(text) for name, _ in keys}
    assert not labels & FORBIDDEN_LABELS
    assert labels <= {"agent", "job_type", "decision", "kind", "le", "python", "reason", "state", "version"}
    assert b"a-secret-never-shown" not in text
    assert value(text, "framepool_jobs_active", agent="transcriber") == 0
    assert value(text, "framepool_build_info") == 1
    assert {s for (s, keys) in samples(text) if s == "framepool_workers"} == {"framepool_workers"}
    states = {dict(keys)["state"] for (s, keys) in samples(text) if s == "framepool_workers"}
    assert states == {"starting", "ready", "stopping", "exited", "none"}


async def test_promtool_accepts_the_output() -> None:
    assert promtool_problems(Metrics(idle_supervisor("transcriber")).render()) == ""


def test_a_distribution_counts_cumulative_buckets_and_weighted_means() -> None:
    distribution = Distribution([0.01, 0.1])
    distribution.observe(0.01)  # on the bound: in its bucket (le)
    distribution.observe(0.05, times=3)
    distribution.observe(7.0)
    assert distribution.cumulative() == [(0.01, 1), (0.1, 4), (float("inf"), 5)]
    assert distribution.count == 5 and distribution.sum == pytest.approx(0.01 + 0.15 + 7.0)
    with pytest.raises(ValueError, match="increasing"):
        Distribution([0.1, 0.01])


def test_stream_totals_keep_detached_streams_and_add_live_ones_without_changing() -> None:
    def stats(pushed: int, busy: float) -> StreamStats:
        return StreamStats(
            stream_id="s",
            worker=0,
            pushed=pushed,
            dropped=1,
            skipped=0,
            processed=pushed - 1,
            lost=0,
            gaps=0,
            errors=0,
            results=2,
            results_dropped=0,
            busy={"a": busy, "b": busy},
            outputs=3,
        )

    retired = StreamTotals()
    retired.add("audio", stats(10, 0.5))
    combined = retired.plus([("audio", stats(5, 0.25)), ("video", stats(7, 1.0))])
    assert set(combined.by_kind["audio"]) == set(FIGURES)
    assert combined.by_kind["audio"]["pushed"] == 15 and combined.by_kind["audio"]["busy_seconds"] == 1.5
    assert combined.by_kind["video"]["outputs"] == 3
    assert retired.by_kind["audio"]["pushed"] == 10  # the retained totals are not changed by a scrape
