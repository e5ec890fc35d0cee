"""The Processor API (worker process; the supervisor imports it to validate parameters and learn formats).

A processor is synchronous, CPU-bound code: numpy in, results out. Subclass `AudioProcessor[Params]` or
`VideoProcessor[Params]`: the frame type and the parameters' type are then known to a type checker in
`process(frame, ctx)` and `self.params`, and `Params` is taken from the type argument. A data processor
(`DataProcessor[Params]`) gets the room's data messages instead (`process_message(msg, ctx)`, a
`framepool.processors.messages.DataMessage`, decoded from its ring slot: a copy it may keep). One instance per
stream, created in the worker that hosts the stream, so it may keep state between frames. `process`
receives a frame whose arrays are zero-copy views of a shared-memory ring slot: valid for the duration of
the call only (copy what must outlive it). Output goes through the context: `emit` for results (sent to
the room as data messages, or written as JSON lines offline), `publish_audio` / `publish_video` for frames
of an output track.

The supervisor never constructs a processor. It imports the processor's module, validates the parameters
against `Params` (so `audio-level(window_ms=abc)` fails at start with the parameter's name and the
expected type, before any worker sees it), and asks the *class* for its input format:
`input_format(params)` is a classmethod of the validated parameters. Whatever is slow to set up (a model)
belongs in the constructor, which runs in the worker, or better in a `WorkerResource`
(framepool.processors.resource), loaded once per worker and shared by the streams there.
"""

from __future__ import annotations

import logging
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import msgspec
import numpy as np
import numpy.typing as npt

from framepool.processors.messages import DataMessage

# The kinds of stream; what each one means is in framepool.processors.kinds.
Kind = Literal["audio", "video", "data"]
PixelFormat = Literal["I420", "RGB24", "RGBA"]


class AudioFormat(msgspec.Struct, frozen=True, kw_only=True):
    """The audio a processor wants: the SDK resamples and remixes to it."""

    sample_rate: int = 48000
    # 1 or 2; 0: as the source (live, 2 when the publisher declared the track stereo, else 1; offline, the
    # file's channel count, at most 2): the frames' `channels` says which.
    channels: int = 1
    # The largest frame the processor accepts. Larger frames cost the supervisor far less CPU per second
    # (one SDK event per frame), so declare the largest your algorithm tolerates.
    frame_ms: int = 10


class VideoFormat(msgspec.Struct, frozen=True, kw_only=True):
    """The video a processor wants: the SDK converts to the pixel format; frames above the maximum are scaled
    down."""

    pixel_format: PixelFormat = "I420"
    max_width: int = 0  # 0: native resolution
    max_height: int = 0


class DataFormat(msgspec.Struct, frozen=True, kw_only=True):
    """What a data processor takes: messages whose msgpack encoding fits `max_message_bytes` (one ring slot;
    a larger one is refused and counted, never split: see framepool.ipc.slots), and a queue of `queue`
    messages between the supervisor and the worker (a full queue refuses the newest, counted)."""

    # Room data packets are at most 15 KiB; the rest of the message (ids, topic, sender, attributes) fits
    # in the remaining 5 KiB. Declare more to receive long text or byte streams.
    max_message_bytes: int = 20 * 1024
    queue: int = 64

    def __post_init__(self) -> None:
        if not 1024 <= self.max_message_bytes <= 64 << 20:
            raise ValueError(f"max_message_bytes = {self.max_message_bytes}: expected 1 KiB to 64 MiB")
        if not 2 <= self.queue <= 4096:
            raise ValueError(f"queue = {self.queue}: expected 2 to 4096 messages")


@dataclass(slots=True)
class AudioFrame:
    """Interleaved int16 PCM; `samples` has shape (samples_per_channel, channels)."""

    samples: npt.NDArray[np.int16]
    sample_rate: int
    channels: int
    # The frame time in µs, the same clock as results' `frame_time_us`: live, when the frame reached the
    # supervisor (wall clock, since the Unix epoch); offline, media time since the start of the input.
    time_us: int
    seq: int
    gap: bool  # frames were lost just before this one (realtime drop or worker restart)


@dataclass(slots=True)
class VideoFrame:
    """A video frame; `data` is the whole buffer (uint8), the accessors below are views of it."""

    data: npt.NDArray[np.uint8]
    width: int
    height: int
    pixel_format: PixelFormat
    time_us: int  # as AudioFrame.time_us
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

    def send_bytes(
        self,
        topic: str,
        data: bytes,
        *,
        name: str,
        mime_type: str = "application/octet-stream",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Send a blob too large for a data message (a JPEG): live, a LiveKit byte stream on `topic` named
        `name`; offline, a file beside the results, named in a result line."""
        ...


class NoParams(msgspec.Struct, forbid_unknown_fields=True):
    """For processors without parameters."""


FrameT = TypeVar("FrameT", AudioFrame, VideoFrame, DataMessage)
ParamsT = TypeVar("ParamsT", bound=msgspec.Struct)


def _params_argument(cls: type) -> type[msgspec.Struct] | None:
    """The Params struct named by the type arguments of `cls`'s own Processor bases, if any."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = typing.get_origin(base)
        if not (isinstance(origin, type) and issubclass(origin, Processor)):
            continue
        arguments = typing.get_args(base)
        candidate = arguments[-1] if arguments else None
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            return candidate
    return None


class Processor(ABC, Generic[FrameT, ParamsT]):
    """The base of every processor; subclass `AudioProcessor[Params]`, `VideoProcessor[Params]` or
    `DataProcessor[Params]`.

    Set `name`, implement `process`, and `input_format` (a classmethod) when the format depends on the
    parameters. `Params` comes from the type argument; a class may still set `Params` itself (then it
    must be the same class, if a type argument names one too).
    """

    name: ClassVar[str]
    kind: ClassVar[Kind]
    Params: ClassVar[type[msgspec.Struct]] = NoParams
    # True when the processor's output is the track it publishes (privacy-blur): attaching it without a
    # TrackOutput is refused at start, instead of every frame failing in `publish_video`.
    publishes: ClassVar[bool] = False

    def __init__(self, params: ParamsT) -> None:
        self.params: ParamsT = params

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        argument = _params_argument(cls)
        if argument is None:
            return
        own = cls.__dict__.get("Params")
        if own is not None and own is not argument:
            raise TypeError(
                f"{cls.__qualname__}: Params is {own.__qualname__} but the type argument says "
                f"{argument.__qualname__}"
            )
        cls.Params = argument

    @classmethod
    def input_format(cls, params: ParamsT) -> AudioFormat | VideoFormat | DataFormat:
        """The format this processor wants its frames in, given its validated parameters.

        A classmethod, so the supervisor learns it without constructing the processor; keep it cheap and
        free of side effects (it runs in the supervisor, on its event loop). Default: the kind's default.
        """
        from framepool.processors.kinds import media_kind  # the kind registry imports this module

        return media_kind(cls.kind).default_format()  # type: ignore[no-any-return]

    @abstractmethod
    def process(self, frame: FrameT, ctx: ProcessContext) -> None:
        """Handle one frame. Its arrays are views of a ring slot, valid for this call only."""

    @classmethod
    def end_of_drain(cls) -> None:
        """Batch what `process` queued: called in the worker once after each pass over the input rings in
        which a stream of this class processed a frame, and before a stream of this class is drained or
        detached (so before its `close`). A processor that runs one model call for many streams queues
        its input in `process` (in per-worker state: a WorkerResource) and makes the one call here,
        delivering each stream's results through the context its input came with. Default: nothing."""

    def close(self, ctx: ProcessContext) -> None:
        """The stream ended: emit what is still pending (a partial window, a summary)."""


class AudioProcessor(Processor[AudioFrame, ParamsT]):
    """A processor of audio frames (AudioFrame), in the AudioFormat its `input_format` declares."""

    kind: ClassVar[Kind] = "audio"

    @classmethod
    def input_format(cls, params: ParamsT) -> AudioFormat:
        """Default: 48 kHz mono, 10 ms frames. Declare the longest frames your algorithm tolerates."""
        return AudioFormat()


class VideoProcessor(Processor[VideoFrame, ParamsT]):
    """A processor of video frames (VideoFrame), in the VideoFormat its `input_format` declares."""

    kind: ClassVar[Kind] = "video"

    @classmethod
    def input_format(cls, params: ParamsT) -> VideoFormat:
        """Default: I420 at the native resolution."""
        return VideoFormat()


class DataProcessor(Processor[DataMessage, ParamsT]):
    """A processor of the room's data messages (packets, text and byte streams, RPC calls, DTMF, attribute
    changes: `DataMessage`), sent to it by a data flow's route (`to_processors`) or by an agent
    (`ctx.attach_data`). Implement `process_message`; `ctx.emit` results reach the room like other results.
    One instance per job and data stream, in one worker: its state is lost if that worker dies (the
    replacement starts with a fresh instance, and the messages it held are counted lost)."""

    kind: ClassVar[Kind] = "data"

    @classmethod
    def input_format(cls, params: ParamsT) -> DataFormat:
        """Default: messages up to 20 KiB (every data packet), a queue of 64."""
        return DataFormat()

    @abstractmethod
    def process_message(self, msg: DataMessage, ctx: ProcessContext) -> None:
        """Handle one message (a copy: it may be kept)."""

    def process(self, frame: DataMessage, ctx: ProcessContext) -> None:
        self.process_message(frame, ctx)
