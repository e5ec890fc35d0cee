"""Streams hosted by a worker: processor instances, their calls and failures (worker process).

Per stream, one processor instance per spec, created in the worker so it may keep state between frames. A
frame reaches `process` as zero-copy numpy views of the input ring slot, released right after the last
processor returns (a data message: a decoded copy, for the processors its slot names); a video processor whose
VideoFormat sets a maximum resolution gets frames above it scaled down first, into a buffer the stream reuses
(one per scale factor, shared by the processors needing it). A processor that raises is counted and logged
with the stream's labels; after `processor_failure_limit` consecutive failures it is disabled for that stream
and the supervisor is told (`processor_disabled`). The worker never dies of a processor exception. A
processor whose class batches across streams (`end_of_drain`) is noted in the worker's `EndOfDrain`
(framepool.worker.drain) each time it processes a frame.

Input frames are decoded by `framepool.ipc.slots`; what processors emit, send and publish goes through
their `StreamContext` and the worker's `ResultWriter` (framepool.worker.context).
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from framepool.ipc import control
from framepool.ipc.activity import ActivityPage
from framepool.ipc.control import CallBudget, WorkerChannel
from framepool.ipc.ring import Doorbell, FrameHeader, FrameRing
from framepool.ipc.slots import KIND_DATA, AudioShape, VideoShape, decode_frame, decode_message
from framepool.logs import log_context
from framepool.processors.api import AudioFrame, Processor, VideoFormat, VideoFrame
from framepool.processors.messages import DataMessage
from framepool.processors.registry import ProcessorSpec, ResolvedSpec, instantiate, resolve
from framepool.processors.resource import release_all, resources_of
from framepool.worker.context import ResultWriter, StreamContext
from framepool.worker.scale import downscale, scale_factor

if TYPE_CHECKING:
    from framepool.worker.drain import EndOfDrain

BATCH = 256  # frames one stream may process per pass before the others get their turn
_NO_BATCHING = Processor.end_of_drain.__func__  # type: ignore[attr-defined]
log = logging.getLogger("framepool.worker")


class HostedProcessor:
    """One processor instance on one stream, constructed here (the supervisor never constructs one).

    Per-worker resources (framepool.processors.resource) the class declares are loaded first unless this
    worker already holds them; a load that raises fails the attach like a constructor that raises. They
    stay loaded for later streams of the class; `release_resources` releases them when the worker exits.
    A processor quarantined on this stream (by the supervisor, carried across restarts) is never
    constructed: its constructor or its resource may be what hurt the worker.
    """

    __slots__ = (
        "batches",
        "busy",
        "context",
        "disabled",
        "drain_failures",
        "failures",
        "grown",
        "instance",
        "max_size",
        "name",
        "over_budget",
        "over_streak",
    )

    def __init__(self, resolved: ResolvedSpec, context: StreamContext, quarantined: bool = False) -> None:
        self.name = resolved.spec.name
        self.instance: Processor[Any, Any] | None = None
        if not quarantined:
            # The class's resources first: they are what a constructor may want to use.
            for resource_ in resources_of(resolved.cls):
                resource_.get()
            self.instance = instantiate(resolved)
        self.context = context
        self.failures = 0  # consecutive failures of process() and close()
        self.drain_failures = 0  # consecutive failures of its class's end_of_drain()
        self.disabled = quarantined
        # Its class batches across streams: noted in the worker's EndOfDrain after each process().
        overridden = getattr(resolved.cls.end_of_drain, "__func__", None) is not _NO_BATCHING
        self.batches = self.instance is not None and overridden
        self.busy = 0.0
        self.over_budget = 0  # calls over the stream's budget
        self.over_streak = 0  # consecutive ones
        self.grown = 0  # bytes the worker's peak memory grew during this processor's calls
        fmt = resolved.fmt
        # A video processor with a maximum resolution gets larger frames scaled down (framepool.worker.scale).
        self.max_size = fmt if isinstance(fmt, VideoFormat) and (fmt.max_width or fmt.max_height) else None


class CallWatch:
    """Times every processor call against its stream's budget and records it in the activity page, so the
    supervisor can cut off a call that overruns and blame the processor of a worker that died; attributes
    growth of the worker's peak memory to the processor whose call grew it (the suspect of a memory kill).
    """

    def __init__(self, page: ActivityPage, budget: CallBudget) -> None:
        self.page = page
        self.budget = budget
        self._peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self._top = 0

    def budget_s(self, frame_s: float) -> float:
        if self.budget.fixed_s > 0:
            return self.budget.fixed_s
        return max(self.budget.min_s, self.budget.frames * frame_s)

    def enter(self, stream: int, processor: int, started: float, budget_s: float) -> None:
        self.page.enter(stream, processor, started, started + budget_s * self.budget.hard)

    def leave(self, stream: int, processor: int, hosted: HostedProcessor) -> None:
        self.page.leave()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, never decreases
        if peak > self._peak:
            hosted.grown += (peak - self._peak) << 10
            self._peak = peak
            if hosted.grown > self._top:
                self._top = hosted.grown
                self.page.grew(stream, processor, hosted.grown)


class FrameScaler:
    """A stream's downscaled copies of the current frame, one per distinct factor its processors need.

    Each factor keeps its output buffer across frames (reallocated only when the geometry changes), so
    scaling costs no per-frame allocation of the output; processors with the same factor share one copy.
    """

    def __init__(self) -> None:
        self._buffers: dict[int, npt.NDArray[np.uint8]] = {}
        self._current: dict[int, VideoFrame] = {}

    def new_frame(self) -> None:
        self._current.clear()

    def scaled(self, frame: VideoFrame, fmt: VideoFormat) -> VideoFrame:
        factor = scale_factor(frame.width, frame.height, fmt)
        if factor == 1:
            return frame
        scaled = self._current.get(factor)
        if scaled is None:
            data, width, height = downscale(
                frame.data, frame.width, frame.height, frame.pixel_format, factor, self._buffers.get(factor)
            )
            self._buffers[factor] = data
            scaled = VideoFrame(data, width, height, frame.pixel_format, frame.time_us, frame.seq, frame.gap)
            self._current[factor] = scaled
        return scaled


class HostedStream:
    """One stream in a worker: its rings and processors."""

    def __init__(
        self,
        message: control.AttachStream,
        writer: ResultWriter,
        channel: WorkerChannel,
        failure_limit: int,
        watch: CallWatch,
        batches: EndOfDrain | None = None,
    ) -> None:
        self.index = message.index
        self.key = message.key
        self.stream_id = message.stream_id
        self.labels: Mapping[str, str] = dict(message.labels)
        self.log_fields = stream_log_fields(message)
        self.realtime = message.realtime
        self.writer = writer
        self.channel = channel
        self.failure_limit = failure_limit
        self.watch = watch
        self.batches = batches  # where its batching processors are noted (None: the worker runs none)
        self.gap_next = message.gap
        self.frame_time_us = 0
        self.frame_s = 1 / 30  # the frame duration, measured; a video frame rate until two frames arrived
        self._last_time_us: int | None = None
        self.out_seq = 0
        self.errors = 0
        self.results_dropped = 0
        self.input: FrameRing | None = None
        self.output: FrameRing | None = None
        self.space_bell: Doorbell | None = None
        self.processors: list[HostedProcessor] = []
        self.start_failures: list[tuple[int, Exception]] = []  # live: processors that could not start
        self.scaler = FrameScaler()

    @classmethod
    def open(
        cls,
        message: control.AttachStream,
        fds: list[int],
        data_bell: Doorbell,
        writer: ResultWriter,
        channel: WorkerChannel,
        config: control.WorkerStart,
        watch: CallWatch,
        batches: EndOfDrain | None = None,
    ) -> HostedStream:
        stream = cls(message, writer, channel, config.processor_failure_limit, watch, batches)
        try:
            expected = 1 + message.has_output + 2 * message.has_space_bell
            if len(fds) != expected:
                raise ValueError(
                    f"attach of stream {message.stream_id!r} carried {len(fds)} fds, expected {expected}"
                )
            stream.input = FrameRing.attach(fds.pop(0))
            if message.has_output:
                stream.output = FrameRing.attach(fds.pop(0))
                stream.output.bind(writer.result_bell, None)
            if message.has_space_bell:
                stream.space_bell = Doorbell.attach(fds.pop(0), fds.pop(0))
            stream.input.bind(None, stream.space_bell)
            quarantined = set(message.quarantined)
            for i, spec in enumerate(message.processors):
                stream.processors.append(stream._host(i, spec, i in quarantined, message.realtime))
            if len(stream.start_failures) == len(stream.processors):
                raise stream.start_failures[0][1]  # nothing could start: the attach fails
        except BaseException:
            control.close_fds(fds)
            stream.close()
            raise
        return stream

    def _host(self, index: int, spec: ProcessorSpec, quarantined: bool, live: bool) -> HostedProcessor:
        """A live stream keeps its other processors when one fails to start (it is disabled, with an
        event); offline, where the run cannot go on as asked, the attach fails."""
        resolved, context = resolve(spec), StreamContext(self, index, spec.name)
        try:
            return HostedProcessor(resolved, context, quarantined)
        except Exception as exc:  # a processor's constructor or resource may raise anything
            if not live:
                raise
            self.start_failures.append((index, exc))
            return HostedProcessor(resolved, context, quarantined=True)  # never constructed: disabled

    def report_start_failures(self) -> None:
        for index, exc in self.start_failures:
            detail = f"failed to start: {type(exc).__name__}: {exc}"
            log.error("processor %s %s; disabled on this stream", self.processors[index].name, detail)
            self._event("processor_disabled", self.processors[index].name, detail, index)

    def pending(self) -> int:
        return self.input.pending() if self.input is not None else 0

    def process_pending(self, limit: int | None = BATCH, until: float | None = None) -> bool:
        """Process what the input ring holds (up to `limit` frames, and no frame started after the monotonic
        time `until` but the first); True if there was anything."""
        ring = self.input
        if ring is None or not ring.pending():  # most streams of a pass have nothing: no context to set
            return False
        count = 0
        with log_context(**self.log_fields):  # what processors log while they process this stream's frames
            while (limit is None or count < limit) and (
                until is None or count == 0 or time.monotonic() < until
            ):
                item = ring.peek()
                if item is None:
                    break
                header, view = item
                try:
                    self._process_frame(header, view)
                finally:
                    del view, item
                    ring.release()
                count += 1
        return count > 0

    def _process_frame(self, header: FrameHeader, view: memoryview) -> None:
        frame: AudioFrame | VideoFrame | DataMessage
        targets = -1  # the processors it is for, as bits: all of them, unless a data slot names some
        if header.kind == KIND_DATA:
            frame, targets = decode_message(header, view, len(self.processors))
        else:
            frame = decode_frame(header, view, lost_before=self.gap_next)
            self._frame_duration(frame)
        self.gap_next = False
        self.frame_time_us = header.ts_us
        if isinstance(frame, VideoFrame):
            self.scaler.new_frame()
        budget_s = self.watch.budget_s(self.frame_s)
        for number, processor in enumerate(self.processors):
            if processor.disabled or processor.instance is None or not targets >> number & 1:
                continue
            started = time.perf_counter()
            self.watch.enter(self.index, number, time.monotonic(), budget_s)
            try:
                given = frame
                if processor.max_size is not None and isinstance(frame, VideoFrame):
                    given = self.scaler.scaled(frame, processor.max_size)  # counted as its busy time
                processor.instance.process(given, processor.context)
                processor.failures = 0
            except Exception as exc:
                self._failed(processor, exc, "process")
            finally:
                self.watch.leave(self.index, number, processor)
            if processor.batches and self.batches is not None:
                self.batches.processed(self, number, processor)
            elapsed = time.perf_counter() - started
            processor.busy += elapsed
            self._check_budget(number, processor, elapsed, budget_s)

    def _frame_duration(self, frame: AudioFrame | VideoFrame) -> None:
        if isinstance(frame, AudioFrame):
            self.frame_s = frame.samples.shape[0] / frame.sample_rate
            return
        last, self._last_time_us = self._last_time_us, frame.time_us
        if last is not None and 0 < frame.time_us - last < 1_000_000:
            self.frame_s = 0.8 * self.frame_s + 0.2 * (frame.time_us - last) / 1e6

    def _check_budget(self, number: int, processor: HostedProcessor, elapsed: float, budget_s: float) -> None:
        if elapsed <= budget_s:
            processor.over_streak = 0
            return
        processor.over_budget += 1
        processor.over_streak += 1
        if processor.over_streak < self.watch.budget.over_limit or processor.disabled:
            return
        processor.disabled = True
        detail = (
            f"{processor.over_streak} calls in a row over its budget of {budget_s * 1000:.0f} ms "
            f"(last {elapsed * 1000:.0f} ms)"
        )
        with log_context(processor=processor.name, **self.log_fields):
            log.error("processor %s quarantined: %s", processor.name, detail)
        self._event("processor_quarantined", processor.name, detail, number)

    def _failed(self, processor: HostedProcessor, exc: Exception, where: str) -> None:
        processor.failures += 1
        self.failed(processor, exc, where, processor.failures)

    def failed(self, processor: HostedProcessor, exc: Exception, where: str, consecutive: int) -> None:
        """`processor` raised in `where` (its `consecutive`-th failure there in a row): counted, logged and
        reported at the first, disabled on this stream at `processor_failure_limit`."""
        self.errors += 1
        detail = f"{where}() raised {type(exc).__name__}: {exc}"
        with log_context(processor=processor.name, **self.log_fields):
            if consecutive == 1:
                log.warning("processor %s %s", processor.name, detail, exc_info=exc)
                self._event("processor_error", processor.name, detail)
            if consecutive >= self.failure_limit and not processor.disabled:
                processor.disabled = True
                log.error("processor %s disabled after %d consecutive failures", processor.name, consecutive)
                self._event(
                    "processor_disabled",
                    processor.name,
                    f"{consecutive} consecutive failures; last: {detail}",
                )

    def _event(self, event: str, processor: str, detail: str, number: int = -1) -> None:
        self.channel.send(
            control.StreamEvent(
                index=self.index,
                event=event,
                processor=processor,
                processor_index=number,
                detail=detail,
                errors=self.errors,
            )
        )

    def publish(self, data: npt.NDArray[Any], shape: AudioShape | VideoShape) -> None:
        if self.output is None:
            raise ValueError(
                f"stream {self.stream_id!r} has no output track (attach it with output_max_frame_bytes > 0)"
            )
        self.out_seq += 1
        self.writer.write(self.output, self.realtime, shape, data, self.out_seq, self.frame_time_us)

    def finish(self) -> None:
        """The stream ended: each processor's close() may emit its last results."""
        for processor in self.processors:
            if processor.disabled or processor.instance is None:
                continue
            started = time.perf_counter()
            try:
                processor.instance.close(processor.context)
            except Exception as exc:
                self._failed(processor, exc, "close")
            processor.busy += time.perf_counter() - started

    def busy(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for processor in self.processors:
            totals[processor.name] = totals.get(processor.name, 0.0) + processor.busy
        return totals

    def close(self) -> None:
        for ring in (self.input, self.output):
            if ring is not None:
                ring.close()
        if self.space_bell is not None:
            self.space_bell.close()
        self.input = self.output = self.space_bell = None


def stream_log_fields(message: control.AttachStream) -> dict[str, str]:
    """The log context of a stream's lines in the worker: its id and labels (room, job, participant...)."""
    return {"stream": message.stream_id, **message.labels}


def release_resources() -> None:
    """At worker exit: release every per-worker resource processors loaded here, newest first."""
    release_all()


def probe(spec: ProcessorSpec) -> str:
    """Construct `spec`'s processor once (its resources first) and drop it: "" if it starts, else why not."""
    try:
        resolved = resolve(spec)
        for resource_ in resources_of(resolved.cls):
            resource_.get()
        instantiate(resolved)
    except Exception as exc:  # a processor's constructor or resource may raise anything
        return f"{type(exc).__name__}: {exc}"
    return ""
