"""The pool's running totals for metrics: stream counters that outlive their streams, timings, restart
reasons (supervisor process).

A stream's counters live on its `StreamAttachment` and survive its workers' deaths (the attachment folds a
dead worker's ring counters into its own), but not its detach: the attachment is dropped. `StreamTotals`
keeps what every detached stream counted, per kind, so that the pool's totals (`WorkerPool.stream_totals`:
these plus the live streams') never decrease while the daemon runs, whatever comes and goes.

`PoolTimings` holds the two distributions measured on the supervisor side, without a clock read per frame:
- per-frame processing time: each pong carries a stream's cumulative busy seconds; the busy time since the
  previous pong divided by the frames read since then is that stream's mean time per frame over the ping
  interval, counted once per frame;
- result latency: a live result carries the arrival time of the frame it answers (the supervisor's wall
  clock, `framepool.ipc.slots`); its age when the supervisor takes it from the worker's result ring is the
  hand-off both ways plus the processing. Offline results carry media time and are not counted.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING

from framepool.distribution import Distribution
from framepool.pool.contract import StreamStats

if TYPE_CHECKING:
    from framepool.pool.process import WorkerProcess

# Seconds per frame: 10 ms audio frames cost microseconds, a heavy video processor tens of milliseconds.
FRAME_TIME_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
# Seconds from a frame's arrival to its result back on the supervisor.
RESULT_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# What a stream counts (`StreamStats` fields and the sum of its busy seconds), summed per kind.
FIGURES = (
    "pushed",
    "processed",
    "dropped",
    "skipped",
    "lost",
    "outputs",
    "results",
    "results_dropped",
    "blobs",
    "errors",
    "busy_seconds",
)

_counts_of = operator.attrgetter(*FIGURES[:-1])  # one call for every StreamStats field in FIGURES


class PoolTimings:
    """The distributions the pool's streams record into (module docstring)."""

    def __init__(self) -> None:
        self.frame_times = Distribution(FRAME_TIME_BUCKETS)
        self.result_latency = Distribution(RESULT_LATENCY_BUCKETS)


class StreamTotals:
    """Per stream kind, the sum of each figure in FIGURES over the streams added."""

    def __init__(self) -> None:
        self.by_kind: dict[str, dict[str, float]] = {}

    def add(self, kind: str, stats: StreamStats) -> None:
        figures = self.by_kind.setdefault(kind, dict.fromkeys(FIGURES, 0.0))
        for name, value in zip(FIGURES, (*_counts_of(stats), sum(stats.busy.values())), strict=True):
            figures[name] += value

    def plus(self, streams: Sequence[tuple[str, StreamStats]]) -> StreamTotals:
        """These totals with the (kind, stats) of live streams added; a new object, these unchanged. One sum
        per kind and figure over all the streams (a scrape's cost, at 64 streams: not a dict update per figure
        and stream)."""
        rows: dict[str, list[tuple[float, ...]]] = {}
        for kind, stats in streams:
            rows.setdefault(kind, []).append((*_counts_of(stats), sum(stats.busy.values())))
        combined = StreamTotals()
        combined.by_kind = {kind: dict(figures) for kind, figures in self.by_kind.items()}
        for kind, kind_rows in rows.items():
            figures = combined.by_kind.setdefault(kind, dict.fromkeys(FIGURES, 0.0))
            for name, column in zip(FIGURES, zip(*kind_rows, strict=True), strict=True):
                figures[name] += sum(column)
        return combined


def restart_reason(worker: WorkerProcess) -> str:
    """Why a serving worker died, as a bounded label: what the pool killed it for, else how it ended."""
    if worker.broke_protocol:
        return "protocol"
    if worker.killed_for is not None:
        return worker.killed_for.value.replace(" ", "_")  # kill_memory, kill_hung, kill_over_budget
    if worker.exitcode is not None and worker.exitcode < 0:
        return "signal"  # a signal the pool did not send: the OOM killer, an operator's kill -9
    return "exit"  # it exited on its own (framepool.ipc.lifecycle.WorkerExit)
