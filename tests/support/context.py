"""A recording ProcessContext and frame feeders, so a processor runs in a test without a worker (test
process; the worker runtime is tested on its own, and every processor also runs live and offline)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from framepool.processors import AudioFrame, PixelFormat, VideoFrame
from framepool.processors.api import Processor


class RecordingContext:
    """Keeps what a processor emits, publishes and sends, in order."""

    def __init__(self, stream_id: str = "s1") -> None:
        self._stream_id = stream_id
        self.results: list[tuple[str, Any]] = []
        self.audio: list[tuple[npt.NDArray[np.int16], int]] = []
        self.video: list[tuple[npt.NDArray[np.uint8], int, int, str]] = []
        self.blobs: list[tuple[str, bytes, str, str, dict[str, str]]] = []  # topic, data, name, mime, attrs
        self._log = logging.LoggerAdapter(logging.getLogger("test"), {})

    @property
    def stream_id(self) -> str:
        return self._stream_id

    @property
    def labels(self) -> Mapping[str, str]:
        return {}

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._log

    def emit(self, topic: str, payload: Any) -> None:
        self.results.append((topic, payload))

    def publish_audio(self, samples: npt.NDArray[np.int16], sample_rate: int) -> None:
        self.audio.append((samples.copy(), sample_rate))

    def publish_video(
        self, data: npt.NDArray[np.uint8], width: int, height: int, pixel_format: PixelFormat = "I420"
    ) -> None:
        self.video.append((data.copy(), width, height, pixel_format))

    def send_bytes(
        self,
        topic: str,
        data: bytes,
        *,
        name: str,
        mime_type: str = "application/octet-stream",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        self.blobs.append((topic, bytes(data), name, mime_type, dict(attributes or {})))

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The emitted payloads that are events (`{"event": ...}`), optionally of one name."""
        return [
            payload
            for _topic, payload in self.results
            if isinstance(payload, dict) and "event" in payload and event in (None, payload["event"])
        ]


def audio_frames(
    samples: npt.NDArray[np.int16], sample_rate: int, frame_ms: int, start_us: int = 0
) -> Iterator[AudioFrame]:
    """`samples` ((n,) or (n, channels) int16) cut into frames of `frame_ms` (the last may be shorter)."""
    block = samples.reshape(samples.shape[0], -1)
    step = sample_rate * frame_ms // 1000
    for seq, offset in enumerate(range(0, block.shape[0], step)):
        chunk = np.ascontiguousarray(block[offset : offset + step])
        time_us = start_us + offset * 1_000_000 // sample_rate
        yield AudioFrame(chunk, sample_rate, chunk.shape[1], time_us, seq, False)


def i420_frames(
    frames: Iterable[npt.NDArray[np.uint8]], width: int, height: int, fps: float, start_us: int = 0
) -> Iterator[VideoFrame]:
    """Whole I420 buffers (as `frame_bytes` sizes them) as VideoFrames at `fps`."""
    for seq, data in enumerate(frames):
        yield VideoFrame(data, width, height, "I420", start_us + round(seq * 1e6 / fps), seq, False)


def run(
    processor: Processor[Any, Any], frames: Iterable[Any], ctx: RecordingContext | None = None
) -> RecordingContext:
    """Feed every frame as the worker would (one frame per pass: `end_of_drain` after each), then close."""
    ctx = ctx or RecordingContext()
    for frame in frames:
        processor.process(frame, ctx)
        type(processor).end_of_drain()
    type(processor).end_of_drain()
    processor.close(ctx)
    return ctx
