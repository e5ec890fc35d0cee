"""The data plane's metric families: messages in and out of rooms, data-flow intents, spools, the bridge
(supervisor process).

Most data-plane counters belong to a job (its intake, its room outputs, its data flow) and vanish with it,
so `JobFigures` keeps what ended jobs counted and adds the running jobs' figures at scrape time: the
totals never decrease. The spools and the bridge process belong to the daemon. Deliveries to the sinks
happen in the bridge process; what the supervisor sees of them is the spool (appended, refused, bytes not
yet delivered and deleted) and the dead-letter file each sink's runner appends refused events to.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator

from framepool.agent.dataplane import Bridges
from framepool.agent.job import RunningJob
from framepool.bridge.runner import DEAD_LETTER
from framepool.ops.families import Family, counter, gauge

Figure = tuple[str, str]  # (family key in JOB_FAMILIES, label value)
JOB_FAMILIES = {
    "in": (
        "framepool_data_messages_in",
        "Data messages (packets, texts, byte streams, DTMF, attribute and metadata changes, RPC) handed to "
        "the jobs' data consumers, by kind.",
        "kind",
    ),
    "in_dropped": (
        "framepool_data_messages_dropped",
        "Incoming data messages and streams not handed over, by reason.",
        "reason",
    ),
    "out": (
        "framepool_data_messages_out",
        "Data packets and texts the jobs sent to their rooms, by outcome (sent: accepted by the room; "
        "dropped: the full outbox dropped the oldest; failed: the room refused it).",
        "outcome",
    ),
    "published": (
        "framepool_results_published",
        "Processor results sent to rooms as data messages, by outcome.",
        "outcome",
    ),
    "intents": (
        "framepool_dataflow_intents",
        "What the data flows decided, by intent or refusal.",
        "intent",
    ),
}


def job_figures(job: RunningJob) -> Counter[Figure]:
    """The data-plane counters of one job, cumulative since it started."""
    ctx, figures = job.ctx, Counter[Figure]()
    for intake in ctx.intakes:
        stats = intake.stats()
        figures.update({("in", kind): count for kind, count in stats.received.items()})
        figures["in_dropped", "rate_limited"] += sum(stats.rate_limited.values())
        figures["in_dropped", "refused"] += stats.refused
        figures["in_dropped", "stream_over_cap"] += stats.streams_over_cap
        figures["in_dropped", "stream_refused"] += stats.streams_refused
        figures["in_dropped", "stream_error"] += stats.stream_errors
        figures["in_dropped", "rpc_saturated"] += stats.rpc_saturated
    outputs = ctx.outputs.stats()
    figures["out", "sent"] += outputs.sent
    figures["out", "dropped"] += outputs.dropped
    figures["out", "failed"] += outputs.failed
    figures["published", "sent"] += ctx.session.results_sent
    rates = [feed.rate for rule in ctx.session.rules for feed in rule.feeds.values()]
    rates += [feed.rate for feed in set(ctx.data_processors.values())]
    figures["published", "rate_limited"] += sum(rate.dropped for rate in rates)  # over result_rate
    for plane in ctx.dataplanes:
        figures.update({("intents", intent): count for intent, count in plane.counters.items()})
    return figures


class JobFigures:
    """The data-plane counters of ended jobs, kept (`ended`), plus the running ones' (`totals`)."""

    def __init__(self) -> None:
        self._ended: Counter[Figure] = Counter()

    def ended(self, job: RunningJob) -> None:
        self._ended.update(job_figures(job))

    def totals(self, running: Iterable[RunningJob]) -> Counter[Figure]:
        totals = Counter(self._ended)
        for job in running:
            totals.update(job_figures(job))
        return totals


def data_families(figures: Counter[Figure], bridges: Bridges) -> Iterator[Family]:
    for key, (name, documentation, label) in JOB_FAMILIES.items():
        values = {(value,): count for (family, value), count in figures.items() if family == key}
        yield counter(name, documentation, [label], values)
    yield from _spool_families(bridges)


def _spool_families(bridges: Bridges) -> Iterator[Family]:
    spools = bridges.spools
    yield counter(
        "framepool_spool_appended",
        "Records appended to each sink's spool (the bridge process delivers them).",
        ["sink"],
        {(sink,): spool.stats.appended for sink, spool in spools.items()},
    )
    yield counter(
        "framepool_spool_refused",
        "Records a sink's spool refused (full, too large, or a write error).",
        ["sink"],
        {(sink,): spool.stats.refused for sink, spool in spools.items()},
    )
    yield gauge(
        "framepool_spool_bytes",
        "Bytes of each sink's spool on disk: what is not yet delivered, and spent segments not yet deleted.",
        ["sink"],
        {(sink,): spool.stats.disk_bytes for sink, spool in spools.items()},
    )
    yield gauge(
        "framepool_dead_letter_bytes",
        "Size of each sink's dead-letter file: events the sink rejected, kept as JSON lines.",
        ["sink"],
        {(sink,): _size(spool.directory / DEAD_LETTER) for sink, spool in spools.items()},
    )
    host = bridges.host
    yield counter(
        "framepool_bridge_restarts",
        "Times the bridge process died and was restarted.",
        [],
        {(): host.restarts} if host is not None else {},
    )


def _size(path: os.PathLike[str]) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
