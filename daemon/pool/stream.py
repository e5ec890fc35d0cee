"""A stream attached to the worker pool: its rings, push paths, results and statistics (supervisor process).

`StreamAttachment` is what the offline runner and the agent server hold for each stream. `push` is the
realtime hot path: one ring write, never blocking (a full ring drops per the stream's policy and the
ring counts it). `push_wait` is the offline path: when the ring is full it sleeps on the stream's space
doorbell (its eventfd on the event loop) until the worker has released a slot, so nothing is lost. Both
take the frame's shape and frame time as `framepool.ipc.slots` defines them, and results and output frames
reach the sink decoded (and validated) by the same module: `Result`, `OutputAudio`, `OutputVideo`.

When the hosting worker dies the pool re-attaches the stream to the replacement worker with fresh
processor instances; the first frame there carries the gap flag and the sink hears "worker_restarted".
Fresh rings (frames still in the old ones are counted as lost) when the death is blamed on nobody or on
this stream: the frame the worker died on may be what killed it, and replaying it would crash the next
one. A stream that was not in the blamed call keeps its rings, and the frames in them and those pushed
during the restart (up to the ring's capacity) reach the replacement. A processor blamed for
`quarantine_incidents` deaths is quarantined on this stream (`incident`, `framepool.pool.quarantine`):
"processor_quarantined" reaches the sink, and no later incarnation constructs or runs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from typing_extensions import Buffer

from framepool.errors import PoolError, ProcessorError
from framepool.ipc import control
from framepool.ipc.blobs import decode_blob
from framepool.ipc.ring import POLICY_BLOCK, POLICY_DROP_NEWEST, POLICY_LATEST, Doorbell, FrameRing
from framepool.ipc.slots import (
    Descriptor,
    FrameShape,
    OutputFrame,
    decode_output,
    decode_result,
    new_stream_key,
)
from framepool.ipc.slots import Result as Result  # sinks know it as framepool.pool.Result
from framepool.pool.contract import StreamSink, StreamSpec, StreamStats
from framepool.pool.figures import PoolTimings
from framepool.pool.quarantine import log_quarantined
from framepool.processors.kinds import media_kind

if TYPE_CHECKING:
    from framepool.pool.process import WorkerProcess

log = logging.getLogger("framepool.pool")
_REALTIME_POLICY = {
    "drop_newest": POLICY_DROP_NEWEST,
    "latest": POLICY_LATEST,
}  # per kind, see processors.kinds


class StreamAttachment:
    """A stream hosted by one worker of the pool (see module docstring)."""

    def __init__(
        self,
        spec: StreamSpec,
        sink: StreamSink,
        slots: int,
        on_detached: Callable[[StreamAttachment], None],
        timings: PoolTimings,
    ) -> None:
        self.stream_id = spec.stream_id
        self.spec = spec
        self.sink = sink
        self.worker: WorkerProcess | None = None
        self.index = 0
        self.key = 0  # the stream's result key on its current worker (framepool.ipc.slots)
        self._slots = slots
        self._on_detached = on_detached
        self._names = [p.name for p in spec.processors]
        self._ring: FrameRing | None = None
        self._output: FrameRing | None = None
        self._space_bell: Doorbell | None = None
        self._space = asyncio.Event()
        self._live = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._final: asyncio.Future[StreamStats] | None = None
        self.failure = ""  # set when the pool halted and this stream cannot continue
        self.pushed = 0
        self.gaps = 0
        self._refused = self._lost = self._errors = self._errors_retired = 0
        self._results = self._results_dropped = self._outputs = 0  # results (delivered, dropped), outputs
        self._blobs = 0  # delivered
        self._retired = {"dropped": 0, "skipped": 0, "read": 0}  # counters of rings of dead workers
        self._busy: dict[str, float] = {}  # of the current worker's processor instances
        self._busy_retired: dict[str, float] = {}  # of instances that died with earlier workers
        self._kept = False  # the rings survived the last worker's death (a neighbour was blamed)
        self.incidents: dict[int, int] = {}  # per processor index
        self.quarantined: dict[int, str] = {}  # processor index -> reason
        self._timings = timings
        self._timed = (0, 0.0)  # frames read and busy seconds at the last pong: the next one's baseline

    @property
    def detaching(self) -> bool:
        return self._final is not None

    # -- placement (called by the pool) ---------------------------------------------------------------

    async def open(self, worker: WorkerProcess, gap: bool) -> None:
        """Hand the rings (fresh ones unless kept across a restart) to `worker`, wait until it hosts the
        stream."""
        spec = self.spec
        self.worker, self.index, self.key = worker, next(worker.indexes), new_stream_key()
        if not self._kept:
            self._create_rings()
        self._kept = False
        assert self._ring is not None
        self._ring.bind(worker.data_bell, None)
        fds = [self._ring.fd]
        if self._output is not None:
            self._output.bind(None, worker.space_bell)
            fds.append(self._output.fd)
        if self._space_bell is not None:
            fds += [self._space_bell.event_fd, self._space_bell.page_fd]
        worker.attachments[self.index] = self
        message = control.AttachStream(
            index=self.index,
            key=self.key,
            stream_id=spec.stream_id,
            kind=spec.kind,
            processors=spec.processors,
            realtime=spec.realtime,
            labels=spec.labels,
            has_output=self._output is not None,
            has_space_bell=self._space_bell is not None,
            gap=gap,
            quarantined=sorted(self.quarantined),
        )
        try:  # constructing processors may load models, as a prewarm hook does; one that hangs is a failure
            within = worker.settings.prewarm_timeout
            reply = await worker.request(message, "attach", self.index, fds, within=within)
        except TimeoutError:
            reason = f"TimeoutError: its processors did not start within prewarm_timeout = {within:g} s"
            reply = control.StreamAttachFailed(index=self.index, reason=reason)
        if isinstance(reply, control.StreamAttachFailed):
            worker.attachments.pop(self.index, None)
            self._close_rings()
            raise ProcessorError(f"stream {spec.stream_id!r}: a processor failed to start: {reply.reason}")
        if reply is not None:
            self._live.set()
        # reply None: the worker died meanwhile; the pool re-attaches this stream to its replacement.

    def _create_rings(self) -> None:
        spec = self.spec
        realtime_policy = _REALTIME_POLICY[media_kind(spec.kind).realtime_ring]
        policy = realtime_policy if spec.realtime else POLICY_BLOCK
        self._ring = FrameRing.create(self._slots, spec.max_frame_bytes, policy)
        if spec.output_max_frame_bytes > 0:
            output_policy = POLICY_DROP_NEWEST if spec.realtime else POLICY_BLOCK
            self._output = FrameRing.create(self._slots, spec.output_max_frame_bytes, output_policy)
        if not spec.realtime:
            self._space_bell = bell = Doorbell.create()
            self._loop.add_reader(bell.fileno(), self._on_space)

    def worker_lost(self, worker: WorkerProcess, keep_rings: bool = False) -> None:
        """The hosting worker died: retire the rings, count what they still held; or, when another stream's
        processor is blamed, keep them (unbound from the dead worker's doorbells) for the replacement."""
        if self.worker is not worker:
            return
        self._kept = keep_rings and self._ring is not None
        if self._kept:
            for ring in (self._ring, self._output):
                if ring is not None:
                    ring.bind(None, None)
        else:
            if self._ring is not None:
                self._lost += self._ring.pending()
            self._retire_rings()
        self.worker = None
        self.gaps += 1
        self._errors_retired, self._errors = (
            self._errors_retired + self._errors,
            0,
        )  # the new worker counts from 0
        for name, seconds in self._busy.items():
            self._busy_retired[name] = self._busy_retired.get(name, 0.0) + seconds
        self._busy = {}
        self._timed = (self._ring_counts().get("read", 0), 0.0)  # a kept ring counts on, busy from zero
        self._live.clear()
        self._space.set()  # a push_wait sleeping on the old ring must notice

    def fail(self, reason: str) -> None:
        """The stream cannot come back (the pool halted): wake everything that waits for it, tell the sink."""
        self.failure = reason
        self._live.set()
        self._space.set()
        self._notify("stream_failed", reason)

    def _retire_rings(self) -> None:
        """Keep the input ring's counters (the stream's totals outlive its rings), then close the rings."""
        if self._ring is not None:
            for key, value in self._ring_counts().items():
                if key in self._retired:
                    self._retired[key] += value
        self._close_rings()

    def _close_rings(self) -> None:
        if self._space_bell is not None:
            self._loop.remove_reader(self._space_bell.fileno())
            self._space_bell.close()
        for ring in (self._ring, self._output):
            if ring is not None:
                ring.close()
        self._ring = self._output = None
        self._space_bell = None

    def _on_space(self) -> None:
        if self._space_bell is not None:
            self._space_bell.clear()
        self._space.set()

    # -- producer -------------------------------------------------------------------------------------

    def push(self, data: Buffer, frame_time_us: int, shape: FrameShape, flags: int = 0) -> bool:
        """Realtime: write the frame or drop it (counted); never blocks. False if dropped.

        `shape` (of the stream's kind) describes `data`; keep one while the geometry holds (see
        `framepool.ipc.slots`, also for the clock of `frame_time_us`)."""
        self.pushed += 1
        ring = self._ring
        if ring is None:
            self._lost += 1
            return False
        if shape.write(ring, data, self.pushed, frame_time_us, flags):
            return True
        if not self.spec.realtime:
            self._refused += 1  # an offline stream pushed without waiting: the ring does not count it
        return False

    async def push_wait(self, data: Buffer, frame_time_us: int, shape: FrameShape, flags: int = 0) -> None:
        """Offline: wait for space in the ring and write; nothing is lost unless the worker dies."""
        self.pushed += 1
        seq = self.pushed
        while True:
            ring, bell = self._ring, self._space_bell
            if self.failure:
                raise PoolError(f"stream {self.stream_id!r} stopped: {self.failure}")
            if self.detaching:
                raise PoolError(f"stream {self.stream_id!r} is detached")
            if ring is None:
                await self._live.wait()
                continue
            if shape.write(ring, data, seq, frame_time_us, flags):
                return
            if bell is None:  # realtime stream: the ring dropped and counted the frame
                return
            self._space.clear()
            bell.prepare_sleep()
            if shape.write(ring, data, seq, frame_time_us, flags):
                bell.cancel_sleep()
                return
            await self._space.wait()

    async def drain(self) -> None:
        """Return once everything pushed so far is processed and its results are delivered to the sink."""
        while True:
            if self.failure:
                raise PoolError(f"stream {self.stream_id!r} stopped: {self.failure}")
            worker = self.worker
            if self.detaching:
                return
            if worker is None or not self._live.is_set():
                await self._live.wait()
                continue
            token = next(worker.tokens)
            try:
                reply = await worker.request(
                    control.DrainStream(index=self.index, token=token),
                    "drain",
                    token,
                    **self._deadline(worker),
                )
            except TimeoutError:  # the worker was killed: the pool re-attaches the stream
                reply = None
            if isinstance(reply, control.StreamDrained):
                self._busy = reply.busy
                self._errors = max(self._errors, reply.errors)
                return
            # The worker died: what it held is counted as lost; drain what the replacement gets.

    async def detach(self) -> StreamStats:
        """Stop the stream: processors' close() runs, final results reach the sink, rings are freed."""
        if self._final is not None:
            return await asyncio.shield(self._final)
        self._final = self._loop.create_future()
        worker = self.worker
        if worker is not None and self._live.is_set():
            try:
                reply = await worker.request(
                    control.DetachStream(index=self.index), "detach", self.index, **self._deadline(worker)
                )
            except TimeoutError:  # the worker was killed: its final results are lost, the detach completes
                reply = None
            if isinstance(reply, control.StreamDetached):
                self._busy = reply.busy
                self._errors = max(self._errors, reply.errors)
                self._results_dropped += reply.results_dropped
        if self.worker is not None:
            self.worker.drain_results()
            self.worker.attachments.pop(self.index, None)
        self._retire_rings()
        self.worker = None
        stats = self.stats()
        self._final.set_result(stats)
        self._space.set()
        self._on_detached(self)
        self._notify("detached", "")
        return stats

    def _deadline(self, worker: WorkerProcess) -> dict[str, Any]:
        """A drain or detach request's deadline: answered within ping_timeout, or the stream moved meanwhile
        (frames read, results or output delivered, or one of its processor calls running within its own time
        limit, which the pool's heartbeat enforces); a worker that does neither is killed."""
        last = [(-1, -1, -1, -1)]

        def moved() -> bool:
            now, call = (
                (self._ring_counts().get("read", 0), self._results, self._outputs, self._blobs),
                worker.activity.read(),
            )
            running = call is not None and call.stream == self.index and time.monotonic() <= call.deadline
            moved, last[0] = now != last[0], now
            return moved or running

        moved()
        return {"within": worker.settings.ping_timeout, "progress": moved}

    def abandon(self, reason: str) -> None:
        """The pool closed without this stream detaching in time: free its rings, finish its detach."""
        if self._final is not None and self._final.done():
            return
        if self.worker is not None:
            self.worker.attachments.pop(self.index, None)
        self._retire_rings()
        self.worker = None
        if self._final is None:
            self._final = self._loop.create_future()
        self._final.set_result(self.stats())
        self._space.set()
        self._on_detached(self)
        self._notify("detached", reason)

    # -- consumer side (called by the hosting WorkerProcess on the event loop) --------------------------

    def deliver_result(self, header: Descriptor, view: memoryview) -> None:
        """Decode a result slot of this stream and hand it to the sink; SlotError if it is malformed."""
        result = decode_result(header, view, self.stream_id, self._names, self.key)
        self._results += 1
        if self.spec.realtime:  # its frame time is the frame's arrival on this wall clock (slots: Clock)
            self._timings.result_latency.observe(max(0.0, time.time() - result.frame_time_us / 1e6))
        try:
            self.sink.on_result(result)
        except Exception:
            log.exception("stream sink on_result failed", extra={"stream": self.stream_id})

    def deliver_blob(self, header: Descriptor, view: memoryview, max_data: int) -> None:
        """Decode a blob slot of this stream and hand it to the sink; SlotError if it is malformed."""
        blob = decode_blob(header, view, self.stream_id, self._names, self.key, max_data)
        self._blobs += 1
        try:
            self.sink.on_blob(blob)
        except Exception:
            log.exception("stream sink on_blob failed", extra={"stream": self.stream_id})

    def drain_output(self) -> int:
        """Hand the output frames waiting in the output ring to the sink; SlotError at a malformed one."""
        ring = self._output
        if ring is None:
            return 0
        count = 0
        while count < self._slots and (item := ring.peek()) is not None:  # the worker keeps writing
            header, view = item
            del item
            try:
                self._deliver_output(decode_output(header, view))
            finally:
                # The frame's data dies here even if the sink kept the frame: the ring may close later.
                view.release()
            ring.release()
            count += 1
        return count

    def _deliver_output(self, frame: OutputFrame) -> None:
        self._outputs += 1
        try:
            self.sink.on_output_frame(self.stream_id, frame)
        except Exception:
            log.exception("stream sink on_output_frame failed", extra={"stream": self.stream_id})

    def output_pending(self) -> bool:
        return self._output is not None and self._output.pending() > 0

    def busy_reported(self, seconds: list[float]) -> None:
        """A pong's busy seconds of this stream's processors, in processor order."""
        self._busy = dict.fromkeys(self._names, 0.0)
        for name, value in zip(self._names, seconds, strict=False):
            self._busy[name] += value
        frames, busy = self._ring_counts().get("read", 0), sum(self._busy.values())
        if frames > self._timed[0] and busy >= self._timed[1]:  # the mean since the last pong, once per frame
            count = frames - self._timed[0]
            self._timings.frame_times.observe((busy - self._timed[1]) / count, count)
        self._timed = (frames, busy)

    def processor_event(self, event: control.StreamEvent) -> None:
        self._errors = max(self._errors, event.errors)
        if event.event == "processor_quarantined":
            if not 0 <= event.processor_index < len(self._names):
                return  # the worker names no processor of this stream: nothing to carry, nothing to report
            self.quarantined[event.processor_index] = event.detail
            log_quarantined(
                self.stream_id, self.spec.labels, self._names[event.processor_index], event.detail
            )
        self._notify(event.event, f"{event.processor}: {event.detail}")

    def incident(self, processor: int, reason: str, limit: int) -> str:
        """A worker death is blamed on `processor` of this stream; quarantine it at the `limit`-th. Returns
        what the restart's log line and event add."""
        if not 0 <= processor < len(self._names) or processor in self.quarantined:
            return ""
        count = self.incidents[processor] = self.incidents.get(processor, 0) + 1
        name = self._names[processor]
        if count < limit:
            return f"; blamed on processor {name} ({reason}): incident {count} of {limit}"
        detail = f"{count} incidents; last: {reason}"
        self.quarantined[processor] = detail
        log_quarantined(self.stream_id, self.spec.labels, self._names[processor], detail)
        self._notify("processor_quarantined", f"{name}: {detail}")
        return f"; blamed on processor {name} ({reason}): quarantined on this stream"

    def restarted(self, detail: str) -> None:
        self._notify("worker_restarted", detail)

    def _notify(self, event: str, detail: str) -> None:
        try:
            self.sink.on_stream_event(self.stream_id, event, detail)
        except Exception:
            log.exception("stream sink on_stream_event failed", extra={"stream": self.stream_id})

    # -- statistics -----------------------------------------------------------------------------------

    def _ring_counts(self) -> dict[str, int]:
        """The input ring's counters, those the worker writes (read, skipped) clamped to what was written: a
        worker can make its own stream's figures wrong, never impossible."""
        if self._ring is None:
            return {}
        counts = self._ring.stats()
        written = counts["written"]
        counts["read"] = read = min(counts["read"], written)
        counts["skipped"] = min(counts["skipped"], written - read)
        return counts

    def occupancy(self) -> float:
        """The share of the input ring's slots holding frames not yet read (0 without a ring)."""
        ring = self._ring
        return ring.pending() / ring.slot_count if ring is not None else 0.0

    def stats(self) -> StreamStats:
        live = self._ring_counts()
        retired = self._retired
        return StreamStats(
            stream_id=self.stream_id,
            worker=self.worker.slot if self.worker is not None else -1,
            pushed=self.pushed,
            dropped=retired["dropped"] + live.get("dropped", 0) + self._refused,
            skipped=retired["skipped"] + live.get("skipped", 0),
            processed=retired["read"] + live.get("read", 0),
            lost=self._lost,
            gaps=self.gaps,
            errors=self._errors_retired + self._errors,
            results=self._results,
            results_dropped=self._results_dropped,
            blobs=self._blobs,
            outputs=self._outputs,
            busy={
                name: self._busy_retired.get(name, 0.0) + self._busy.get(name, 0.0)
                for name in dict.fromkeys(self._names)
            },
            incidents=sum(self.incidents.values()),
            quarantined={self._names[index]: reason for index, reason in self.quarantined.items()},
        )
