"""What a user of the pool gives and gets for one stream: its spec, its sink, its statistics (supervisor
process)."""

from __future__ import annotations

from typing import Protocol

import msgspec

from framepool.ipc.blobs import Blob
from framepool.ipc.slots import OutputFrame, Result
from framepool.processors.api import Kind
from framepool.processors.registry import ProcessorSpec


class StreamSink(Protocol):
    """Where a stream's output goes; called on the supervisor's event loop, must not block."""

    def on_result(self, result: Result) -> None: ...

    def on_output_frame(self, stream_id: str, frame: OutputFrame) -> None:
        """A frame of the output track; `frame.data` is valid during the call only."""
        ...

    def on_blob(self, blob: Blob) -> None:
        """A blob (`ctx.send_bytes`); a sink with nowhere to send it drops it."""
        ...

    def on_stream_event(self, stream_id: str, event: str, detail: str) -> None:
        """ "processor_error", "processor_disabled", "processor_quarantined" (detail starts with the
        processor's name and a colon), "worker_restarted" (a gap), "detached", and "stream_failed" (the pool
        halted or the stream's processors cannot start again: no more frames)."""
        ...


class StreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    kind: Kind  # an attachable one (framepool.processors.kinds)
    processors: list[ProcessorSpec]  # all share one input format (see framepool.pool.format_groups)
    realtime: bool = True  # False: offline back-pressure (POLICY_BLOCK), nothing lost
    max_frame_bytes: int  # ring slot size
    output_max_frame_bytes: int = 0  # >0: an output ring for ctx.publish_audio / publish_video
    labels: dict[str, str] = {}  # room, participant, track, source, job: log context in both processes


class StreamStats(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    worker: int  # slot of the hosting worker, -1 while it is being replaced or after detach
    pushed: int  # frames offered to push / push_wait
    dropped: int  # refused by a full realtime ring
    skipped: int  # video: older frames the worker jumped over to reach the newest
    processed: int  # frames the worker handed to the processors
    lost: int  # frames that died with a worker (in its ring, or pushed while it was replaced)
    gaps: int  # worker restarts this stream went through
    errors: int  # processor exceptions
    results: int  # results delivered to the sink
    results_dropped: int  # results and blobs a full result or blob ring refused (realtime only)
    busy: dict[
        str, float
    ]  # seconds spent in each processor: at most a ping interval old (exact after drain, detach)
    blobs: int = 0  # blobs (ctx.send_bytes) delivered to the sink
    outputs: int = 0  # output frames (ctx.publish_audio / publish_video) delivered to the sink
    incidents: int = 0  # worker deaths blamed on one of this stream's processors
    quarantined: dict[str, str] = {}  # processor name -> why it was quarantined on this stream
