"""The worker pool as the supervisor sees it (supervisor process).

`pool` places streams on workers and restarts them, `formats` splits processors into streams by input
format, `process` is the supervisor's handle on one worker process (`blobring`: its blob ring), `spawn`
starts one, `ladder` stops one, `stream` a stream attached to the pool, `contract` its spec, sink and
statistics, `results` the schema of a result leaving framepool, `placement` the choice of worker,
`forkserver` what the forkserver preloads. Nothing here runs in a worker: workers are
reached only through `framepool.ipc`.
"""

from framepool.ipc.blobs import Blob
from framepool.pool.contract import StreamSink, StreamSpec, StreamStats
from framepool.pool.formats import FormatGroup, format_groups, input_format_of, ring_slots
from framepool.pool.pool import PoolStats, WorkerPool, WorkerStats, close_budget
from framepool.pool.stream import Result, StreamAttachment

__all__ = [
    "Blob",
    "FormatGroup",
    "PoolStats",
    "Result",
    "StreamAttachment",
    "StreamSink",
    "StreamSpec",
    "StreamStats",
    "WorkerPool",
    "WorkerStats",
    "close_budget",
    "format_groups",
    "input_format_of",
    "ring_slots",
]
