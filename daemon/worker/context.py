"""What a processor's output goes through in a worker: the ProcessContext of one processor on one stream,
and the writer of the worker's result and blob rings (worker process).

`ctx.emit` writes a result slot (`framepool.ipc.slots`) into the worker's one result ring; `ctx.send_bytes`
writes a blob slot (`framepool.ipc.blobs`) into its blob ring, one whole blob per slot, at most `bytes_max`
bytes (more raises ValueError, counted as the processor's error like an oversized result);
`ctx.publish_audio` / `publish_video` write the stream's output ring. Every slot carries the frame time of
the input frame being processed. A full ring drops for realtime streams (results and blobs dropped are
counted together, `results_dropped`) and makes offline streams wait for space (the supervisor always
drains).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import numpy.typing as npt

from framepool.ipc.blobs import BlobHeader, blob_slot
from framepool.ipc.ring import Doorbell, FrameRing
from framepool.ipc.slots import AudioShape, SlotShape, VideoShape, pixel_layout, result_slot
from framepool.processors.api import PixelFormat

if TYPE_CHECKING:
    from framepool.ipc.blobs import BlobShape
    from framepool.worker.hosting import HostedStream


class ResultWriter:
    """The producer side of the worker's result and blob rings (and the space-wait shared with output
    rings)."""

    def __init__(
        self,
        ring: FrameRing,
        result_bell: Doorbell,
        space_bell: Doorbell,
        max_bytes: int,
        blobs: FrameRing | None = None,
        bytes_max: int = 0,
    ) -> None:
        self.ring = ring
        self.result_bell = result_bell
        self.space_bell = space_bell
        self.max_bytes = max_bytes
        self.blobs = blobs
        self.bytes_max = bytes_max
        # Waits for space until the bell rings or the timeout passes, answering control messages meanwhile
        # (the runtime's; a worker waiting on the supervisor's back-pressure is alive and must say so).
        self.wait_space: Callable[[float], object] = self.space_bell.wait

    def emit(self, stream: HostedStream, processor: int, seq: int, topic: str, payload: Any) -> bool:
        """Write one result of `stream` (ValueError for a topic or body over its limit); False if a full ring
        dropped it."""
        body = msgspec.json.encode(payload)
        if len(body) > self.max_bytes:
            raise ValueError(f"result of {len(body)} bytes exceeds result_max_bytes = {self.max_bytes}")
        shape, data = result_slot(stream.index, stream.key, processor, topic, body)
        return self.write(self.ring, stream.realtime, shape, data, seq, stream.frame_time_us)

    def blob(self, stream: HostedStream, processor: int, seq: int, header: BlobHeader, data: bytes) -> bool:
        """Write one blob of `stream` (ValueError over `bytes_max` or the header's limits); False if a full
        ring dropped it."""
        if self.blobs is None:
            raise ValueError("send_bytes is off in this pool (bytes_ring_slots = 0)")
        if len(data) > self.bytes_max:
            raise ValueError(f"send_bytes of {len(data)} bytes exceeds bytes_max = {self.bytes_max}")
        shape, payload = blob_slot(stream.index, stream.key, processor, header, data)
        return self.write(self.blobs, stream.realtime, shape, payload, seq, stream.frame_time_us)

    def write(
        self, ring: FrameRing, realtime: bool, shape: SlotShape | BlobShape, data: Any, seq: int, ts_us: int
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
            self.wait_space(1.0)

    def close(self) -> None:
        self.ring.close()
        if self.blobs is not None:
            self.blobs.close()
        self.result_bell.close()
        self.space_bell.close()


class StreamContext:
    """The ProcessContext of one processor on one stream."""

    def __init__(self, stream: HostedStream, processor_index: int, name: str) -> None:
        self._stream = stream
        self._index = processor_index
        self._seq = 0
        self._blob_seq = 0
        self._log = logging.LoggerAdapter(
            logging.getLogger(f"framepool.processor.{name}"), {**stream.log_fields, "processor": name}
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
        if not stream.writer.emit(stream, self._index, self._seq, topic, payload):
            stream.results_dropped += 1

    def send_bytes(
        self,
        topic: str,
        data: bytes,
        *,
        name: str,
        mime_type: str = "application/octet-stream",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        stream = self._stream
        header = BlobHeader(topic, name, mime_type, dict(attributes or {}))
        self._blob_seq += 1
        if not stream.writer.blob(stream, self._index, self._blob_seq, header, bytes(data)):
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
