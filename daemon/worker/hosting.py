"""Streams hosted by a worker: processor instances, the ProcessContext they get, result and output writing
(worker process).

Per stream, one processor instance per spec, created in the worker so it may keep state between frames.
A frame reaches `process` as zero-copy numpy views of the input ring slot, released right after the last
processor returns; a video processor whose VideoFormat sets a maximum resolution gets frames above it
scaled down first, into a buffer the stream reuses (per distinct scale factor, shared by the processors
that need the same one). A processor that raises is counted and logged with the stream's labels; after
`processor_failure_limit` consecutive failures it is disabled for that stream and the supervisor is told
(`processor_disabled`). The worker never dies of a processor exception.

Results travel through the worker's one result ring, output frames through the stream's output ring, both
encoded by `framepool.ipc.slots` (a result slot names the stream and the processor and carries the topic and
the msgspec.json encoding of what the processor emitted); input frames are decoded by it too. A result or
output frame carries the frame time of the input frame being processed. A full result or output ring drops
for realtime streams (results dropped are counted) and makes offline streams wait for space (the supervisor
always drains).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from framepool.ipc import control
from framepool.ipc.control import WorkerChannel
from framepool.ipc.ring import Doorbell, FrameHeader, FrameRing
from framepool.ipc.slots import AudioShape, SlotShape, VideoShape, decode_frame, pixel_layout, result_slot
from framepool.logs import log_context
from framepool.processors.api import PixelFormat, Processor, VideoFormat, VideoFrame
from framepool.processors.registry import ResolvedSpec, instantiate, resolve
from framepool.processors.resource import release_all, resources_of
from framepool.worker.scale import downscale, scale_factor

BATCH = 256  # frames one stream may process per pass before the others get their turn
log = logging.getLogger("framepool.worker")


class ResultWriter:
    """The producer side of the worker's result ring (and the space-wait shared with output rings)."""

    def __init__(self, ring: FrameRing, result_bell: Doorbell, space_bell: Doorbell, max_bytes: int) -> None:
        self.ring = ring
        self.result_bell = result_bell
        self.space_bell = space_bell
        self.max_bytes = max_bytes

    def emit(
        self, index: int, processor: int, seq: int, ts_us: int, topic: str, payload: Any, realtime: bool
    ) -> bool:
        """Write one result (ValueError for a topic or body over its limit); False if a full ring dropped
        it."""
        body = msgspec.json.encode(payload)
        if len(body) > self.max_bytes:
            raise ValueError(f"result of {len(body)} bytes exceeds result_max_bytes = {self.max_bytes}")
        shape, data = result_slot(index, processor, topic, body)
        return self.write(self.ring, realtime, shape, data, seq, ts_us)

    def write(
        self, ring: FrameRing, realtime: bool, shape: SlotShape, data: Any, seq: int, ts_us: int
    ) -> bool:
        """Write a slot; realtime: False when full; offline: wait for the supervisor to make space."""
        if shape.write(ring, data, seq, ts_us):
            return True
        if realtime:
            return False
        while True:
            self.space_bell.prepare_sleep()
            if shape.write(ring, data, seq, ts_us):
                self.space_bell.cancel_sleep()
                return True
            # A finite wait only as a safety net: the supervisor rings after every release while we wait.
            self.space_bell.wait(1.0)

    def close(self) -> None:
        self.ring.close()
        self.result_bell.close()
        self.space_bell.close()


class StreamContext:
    """The ProcessContext of one processor on one stream."""

    def __init__(self, stream: HostedStream, processor_index: int, name: str) -> None:
        self._stream = stream
        self._index = processor_index
        self._seq = 0
        self._log = logging.LoggerAdapter(
            logging.getLogger(f"framepool.processor.{name}"), dict(stream.labels)
        )

    @property
    def stream_id(self) -> str:
        return self._stream.stream_id

    @property
    def labels(self) -> Mapping[str, str]:
        return self._stream.labels

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._log

    def emit(self, topic: str, payload: Any) -> None:
        stream = self._stream
        self._seq += 1
        if not stream.writer.emit(
            stream.index, self._index, self._seq, stream.frame_time_us, topic, payload, stream.realtime
        ):
            stream.results_dropped += 1

    def publish_audio(self, samples: npt.NDArray[np.int16], sample_rate: int) -> None:
        if samples.ndim != 2 or samples.dtype != np.int16:
            raise ValueError(
                f"publish_audio needs int16 samples shaped (samples, channels), got {samples.dtype} "
                f"{samples.shape}"
            )
        shape = AudioShape(sample_rate, samples.shape[1], samples.shape[0])
        self._stream.publish(np.ascontiguousarray(samples), shape)

    def publish_video(
        self, data: npt.NDArray[np.uint8], width: int, height: int, pixel_format: PixelFormat = "I420"
    ) -> None:
        shape = VideoShape(pixel_layout(pixel_format), width, height)
        if data.nbytes != shape.nbytes:
            raise ValueError(
                f"a {width}x{height} {pixel_format} frame has {shape.nbytes} bytes, got {data.nbytes}"
            )
        self._stream.publish(np.ascontiguousarray(data), shape)


class HostedProcessor:
    """One processor instance on one stream, constructed here (the supervisor never constructs one).

    Per-worker resources (framepool.processors.resource) the class declares are loaded first unless this
    worker already holds them; a load that raises fails the attach like a constructor that raises. They
    stay loaded for later streams of the class; `release_resources` releases them when the worker exits.
    """

    __slots__ = ("busy", "context", "disabled", "failures", "instance", "max_size", "name")

    def __init__(self, resolved: ResolvedSpec, context: StreamContext) -> None:
        self.name = resolved.spec.name
        # The class's resources first: they are what a constructor may want to use.
        for resource in resources_of(resolved.cls):
            resource.get()
        self.instance: Processor[Any, Any] = instantiate(resolved)
        self.context = context
        self.failures = 0
        self.disabled = False
        self.busy = 0.0
        fmt = resolved.fmt
        # A video processor with a maximum resolution gets larger frames scaled down (framepool.worker.scale).
        self.max_size = fmt if isinstance(fmt, VideoFormat) and (fmt.max_width or fmt.max_height) else None


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
        self, message: control.AttachStream, writer: ResultWriter, channel: WorkerChannel, failure_limit: int
    ) -> None:
        self.index = message.index
        self.stream_id = message.stream_id
        self.labels: Mapping[str, str] = dict(message.labels)
        self.realtime = message.realtime
        self.writer = writer
        self.channel = channel
        self.failure_limit = failure_limit
        self.gap_next = message.gap
        self.frame_time_us = 0
        self.out_seq = 0
        self.errors = 0
        self.results_dropped = 0
        self.input: FrameRing | None = None
        self.output: FrameRing | None = None
        self.space_bell: Doorbell | None = None
        self.processors: list[HostedProcessor] = []
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
    ) -> HostedStream:
        stream = cls(message, writer, channel, config.processor_failure_limit)
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
            for i, spec in enumerate(message.processors):
                context = StreamContext(stream, i, spec.name)
                stream.processors.append(HostedProcessor(resolve(spec), context))
        except BaseException:
            control.close_fds(fds)
            stream.close()
            raise
        return stream

    def pending(self) -> int:
        return self.input.pending() if self.input is not None else 0

    def process_pending(self, limit: int | None = BATCH) -> bool:
        """Process what the input ring holds (up to `limit` frames); True if there was anything."""
        ring = self.input
        if ring is None:
            return False
        count = 0
        while limit is None or count < limit:
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
        frame = decode_frame(header, view, lost_before=self.gap_next)
        self.gap_next = False
        self.frame_time_us = frame.time_us
        if isinstance(frame, VideoFrame):
            self.scaler.new_frame()
        for processor in self.processors:
            if processor.disabled:
                continue
            started = time.perf_counter()
            try:
                given = frame
                if processor.max_size is not None and isinstance(frame, VideoFrame):
                    given = self.scaler.scaled(
                        frame, processor.max_size
                    )  # counted as the processor's busy time
                processor.instance.process(given, processor.context)
                processor.failures = 0
            except Exception as exc:
                self._failed(processor, exc, "process")
            processor.busy += time.perf_counter() - started

    def _failed(self, processor: HostedProcessor, exc: Exception, where: str) -> None:
        self.errors += 1
        processor.failures += 1
        detail = f"{where}() raised {type(exc).__name__}: {exc}"
        with log_context(stream=self.stream_id, processor=processor.name, **self.labels):
            if processor.failures == 1:
                log.warning("processor %s %s", processor.name, detail, exc_info=exc)
                self._event("processor_error", processor.name, detail)
            if processor.failures >= self.failure_limit and not processor.disabled:
                processor.disabled = True
                log.error(
                    "processor %s disabled after %d consecutive failures", processor.name, processor.failures
                )
                self._event(
                    "processor_disabled",
                    processor.name,
                    f"{processor.failures} consecutive failures; last: {detail}",
                )

    def _event(self, event: str, processor: str, detail: str) -> None:
        self.channel.send(
            control.StreamEvent(
                index=self.index, event=event, processor=processor, detail=detail, errors=self.errors
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
            if processor.disabled:
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


def release_resources() -> None:
    """At worker exit: release every per-worker resource processors loaded here, newest first."""
    release_all()
