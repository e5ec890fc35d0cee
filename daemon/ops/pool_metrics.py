"""The worker pool's metric families: workers, streams, frames, rings, timings (supervisor process).

Everything is read from what the pool already holds: each slot's restarts and CPU count (the dead
incarnations' last readings kept, so the counter only grows), the PSS its heartbeat measured (at most a
ping interval old: reading smaps at scrape time would cost more than the whole scrape), the streams'
counters summed per kind with those of detached streams (`WorkerPool.stream_totals`), and the
distributions its streams record into (`framepool.pool.figures`). Labels are bounded by configuration:
`worker` is a slot index, `kind` a media kind, `reason` and `state` come from fixed sets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from framepool.ops.families import Family, counter, gauge, histogram
from framepool.pool import WorkerPool
from framepool.pool.figures import PoolTimings
from framepool.pool.process import WorkerState

WORKER_STATES = [state.value for state in WorkerState] + ["none"]  # "none": a slot between incarnations
# Stream figures (framepool.pool.figures.FIGURES) exported as counters by kind: name, help.
STREAM_COUNTERS = {
    "pushed": (
        "framepool_frames_in",
        "Frames handed to the pool to be processed (pushed to a worker's ring).",
    ),
    "processed": (
        "framepool_frames_processed",
        "Frames a worker read from its ring and gave its processors.",
    ),
    "outputs": ("framepool_frames_out", "Output frames processors published (ctx.publish_audio/video)."),
    "results": ("framepool_results", "Results processors emitted that reached the supervisor."),
    "blobs": ("framepool_blobs", "Blobs (ctx.send_bytes) that reached the supervisor."),
    "results_dropped": ("framepool_results_dropped", "Results and blobs refused by a full result ring."),
    "errors": ("framepool_processor_errors", "Exceptions raised by processors."),
    "busy_seconds": ("framepool_processor_busy_seconds", "Seconds processors spent processing frames."),
}
# Why a frame pushed was never processed: stream figure -> reason label.
DROP_REASONS = {"dropped": "ring_full", "skipped": "skipped_stale", "lost": "worker_lost"}


def pool_families(pool: WorkerPool | None) -> Iterator[Family]:
    """Every pool family; with no pool yet (starting), the same families with what is known: nothing."""
    yield from _worker_families(pool)
    yield from _stream_families(pool)
    yield from _timing_families(pool)


def _worker_families(pool: WorkerPool | None) -> Iterator[Family]:
    workers = pool.stats().workers if pool is not None else []
    states = Counter(worker.state for worker in workers)
    yield gauge(
        "framepool_workers",
        "Worker slots by the state of their current process.",
        ["state"],
        {(state,): states[state] for state in WORKER_STATES},
    )
    reasons: Counter[str] = Counter()
    for worker in workers:
        reasons.update(worker.restart_reasons)
    yield counter(
        "framepool_worker_restarts",
        "Workers that died while serving and were replaced, by reason (kill_memory, kill_hung, "
        "kill_over_budget, protocol: the pool killed it; signal, exit: it died on its own).",
        ["reason"],
        {(reason,): count for reason, count in reasons.items()},
    )
    yield gauge(
        "framepool_worker_pss_bytes",
        "Proportional set size of each worker process, as the pool's last heartbeat measured it.",
        ["worker"],
        {(str(worker.slot),): worker.pss_bytes for worker in workers},
    )
    yield counter(
        "framepool_worker_cpu_seconds",
        "CPU seconds (user + system) the kernel charged to the processes of each worker slot.",
        ["worker"],
        {(str(worker.slot),): worker.cpu_seconds for worker in workers},
    )
    yield gauge(
        "framepool_pool_halted",
        "1 when the worker pool halted (a crash loop): no stream can be placed.",
        [],
        {(): float(pool is not None and pool.halted.is_set())},
    )


def _stream_families(pool: WorkerPool | None) -> Iterator[Family]:
    streams = pool.streams() if pool is not None else []
    by_kind = pool.stream_totals().by_kind if pool is not None else {}
    attached: Counter[str] = Counter(s.spec.kind for s in streams)
    yield gauge(
        "framepool_streams",
        "Streams attached to the pool, by kind.",
        ["kind"],
        {(kind,): attached[kind] for kind in {*by_kind, *attached}},  # kinds seen before stay, at 0
    )
    for figure, (name, documentation) in STREAM_COUNTERS.items():
        values = {(kind,): figures[figure] for kind, figures in by_kind.items()}
        yield counter(name, documentation + " By stream kind.", ["kind"], values)
    yield counter(
        "framepool_frames_dropped",
        "Frames pushed that no processor saw, by kind and reason: ring_full (a realtime ring was full), "
        "skipped_stale (video: older frames skipped to reach the newest), worker_lost (in a dead worker's "
        "ring or pushed while it was replaced).",
        ["kind", "reason"],
        {
            (kind, reason): figures[figure]
            for kind, figures in by_kind.items()
            for figure, reason in DROP_REASONS.items()
        },
    )
    occupancy = [s.occupancy() for s in streams]
    yield gauge(
        "framepool_ring_occupancy_max_ratio",
        "The fullest stream input ring: frames waiting over its slots (0..1).",
        [],
        {(): max(occupancy, default=0.0)},
    )
    yield gauge(
        "framepool_ring_occupancy_mean_ratio",
        "Mean fill of the stream input rings (0..1).",
        [],
        {(): sum(occupancy) / len(occupancy) if occupancy else 0.0},
    )


def _timing_families(pool: WorkerPool | None) -> Iterator[Family]:
    timings = pool.timings if pool is not None else PoolTimings()  # none yet: empty, but exposed
    yield histogram(
        "framepool_frame_processing_seconds",
        "Processing time per frame (all of a stream's processors): each stream's mean over a ping "
        "interval, counted once per frame of that interval.",
        timings.frame_times,
    )
    yield histogram(
        "framepool_result_latency_seconds",
        "Hand-off latency of live streams: from a frame's arrival at the supervisor to the supervisor "
        "taking a result for it from the worker (the ring hand-off both ways plus the processing).",
        timings.result_latency,
    )
