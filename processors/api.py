"""The Processor API (worker process; the supervisor imports it to validate parameters and formats).

A processor is synchronous, CPU-bound code: numpy in, results out. One instance per stream, created in
the worker that hosts the stream, so it may keep state between frames. `process` receives a frame whose
arrays are zero-copy views of a shared-memory ring slot: valid for the duration of the call only (copy
what must outlive it). Output goes through the context: `emit` for results (sent to the room as data
messages, or written as JSON lines offline), `publish_audio` / `publish_video` for frames of an output track.

Parameters are a msgspec Struct per processor (`Params`), so `audio-level(window_ms=abc)` fails at start
with the parameter's name and the expected type, in the supervisor, before any worker sees it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

Kind = Literal["audio", "video"]
PixelFormat = Literal["I420", "RGB24", "RGBA"]


class AudioFormat(msgspec.Struct, frozen=True, kw_only=True):
    """The audio a processor wants: the SDK resamples and remixes to it."""

    sample_rate: int = 48000
    channels: int = 1
    # The largest frame the processor accepts. Larger frames cost the supervisor far less CPU per second
    # (one SDK event per frame), so declare the largest your algorithm tolerates.
    frame_ms: int = 10


class VideoFormat(msgspec.Struct, frozen=True, kw_only=True):
    """The video a processor wants: the SDK converts to the pixel format; frames above the maximum are scaled down."""

    pixel_format: PixelFormat = "I420"
    max_width: int = 0  # 0: native resolution
    max_height: int = 0


@dataclass(slots=True)
class AudioFrame:
    """Interleaved int16 PCM; `samples` has shape (samples_per_channel, channels)."""

    samples: npt.NDArray[np.int16]
    sample_rate: int
    channels: int
    ts_us: int  # capture time, microseconds
    seq: int
    gap: bool  # frames were lost just before this one (realtime drop or worker restart)


@dataclass(slots=True)
class VideoFrame:
    """A video frame; `data` is the whole buffer (uint8), the accessors below are views of it."""

    data: npt.NDArray[np.uint8]
    width: int
    height: int
    pixel_format: PixelFormat
    ts_us: int
    seq: int
    gap: bool

    @property
    def y(self) -> npt.NDArray[np.uint8]:
        """The luma plane (I420) as (height, width)."""
        self._require("I420")
        return self.data[: self.width * self.height].reshape(self.height, self.width)

    def chroma(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """The U and V planes (I420), each (ceil(height/2), ceil(width/2))."""
        self._require("I420")
        cw, ch = (self.width + 1) // 2, (self.height + 1) // 2
        start = self.width * self.height
        u = self.data[start : start + cw * ch].reshape(ch, cw)
        v = self.data[start + cw * ch : start + 2 * cw * ch].reshape(ch, cw)
        return u, v

    @property
    def image(self) -> npt.NDArray[np.uint8]:
        """The pixels (RGB24/RGBA) as (height, width, 3 or 4)."""
        depth = {"RGB24": 3, "RGBA": 4}.get(self.pixel_format)
        if depth is None:
            raise ValueError(f"image needs RGB24 or RGBA frames, this one is {self.pixel_format}")
        return self.data[: self.width * self.height * depth].reshape(self.height, self.width, depth)

    def _require(self, pixel_format: PixelFormat) -> None:
        if self.pixel_format != pixel_format:
            raise ValueError(f"this accessor needs {pixel_format} frames, this one is {self.pixel_format}")


def frame_bytes(width: int, height: int, pixel_format: PixelFormat) -> int:
    """Bytes of one frame of this geometry."""
    if pixel_format == "I420":
        return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)
    return width * height * (3 if pixel_format == "RGB24" else 4)


class ProcessContext(Protocol):
    """What a processor may do besides computing; provided by the worker runtime per stream."""

    @property
    def stream_id(self) -> str: ...

    @property
    def labels(self) -> Mapping[str, str]:
        """Where the frames come from (room, participant, track, source), for logs and results."""
        ...

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]: ...

    def emit(self, topic: str, payload: Any) -> None:
        """Send a result: anything msgspec can encode (dicts, lists, Structs, numbers, strings, bytes)."""
        ...

    def publish_audio(self, samples: npt.NDArray[np.int16], sample_rate: int) -> None:
        """Send a frame of the output audio track; `samples` is (samples_per_channel, channels) int16."""
        ...

    def publish_video(
        self, data: npt.NDArray[np.uint8], width: int, height: int, pixel_format: PixelFormat = "I420"
    ) -> None:
        """Send a frame of the output video track."""
        ...


class NoParams(msgspec.Struct, forbid_unknown_fields=True):
    """For processors without parameters."""


class Processor(ABC):
    """Subclass, set `name`, `kind` and `Params`, implement `process` (and `input_format` if it depends on parameters)."""

    name: ClassVar[str]
    kind: ClassVar[Kind]
    Params: ClassVar[type[msgspec.Struct]] = NoParams

    def __init__(self, params: Any) -> None:
        self.params = params

    def input_format(self) -> AudioFormat | VideoFormat:
        """The format this processor wants its frames in."""
        return AudioFormat() if self.kind == "audio" else VideoFormat()

    @abstractmethod
    def process(self, frame: Any, ctx: ProcessContext) -> None:
        """Handle one frame (AudioFrame or VideoFrame, per `kind`). Views are valid for this call only."""

    def close(self, ctx: ProcessContext) -> None:  # noqa: B027 - optional hook, empty by default
        """The stream ended: emit what is still pending (a partial window, a summary)."""
