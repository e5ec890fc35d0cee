"""What a ring slot means: one encoder and one decoder per slot kind (both processes).

The rings (`framepool.ipc.ring`) move 64-byte descriptors without interpreting them: seq, ts_us, kind,
fmt, flags, three kind-specific words a, b, c, and the payload's length. This module is the only one that
reads or writes those words under a meaning, so the supervisor's push paths and drains and the worker's
frame decode, result writer and output publisher cannot disagree about them:

    kind        fmt                  a              b                c                  payload
    1 audio     1 s16                sample rate    channels         samples/channel    interleaved int16 PCM
    2 video     2 I420, 3 RGB24,     width          height           0                  the pixels
                4 RGBA
    3 result    5 bytes              stream index   processor index  topic length       UTF-8 topic, JSON body
    4 data      6 msgpack            processors     0                0                  a DataMessage, msgpack
    5 blob      5 bytes              stream index   processor index  header length      key, header, data

Blob slots (`ctx.send_bytes`) travel on the worker's blob ring and are encoded and decoded by
`framepool.ipc.blobs`, under the same rules as results (the stream's key first, everything validated).

Audio and video slots travel both ways: supervisor to worker on a stream's input ring (decoded into the
Processor API's `AudioFrame` / `VideoFrame`), worker to supervisor on its output ring (`ctx.publish_audio`
/ `publish_video`, decoded into `OutputAudio` / `OutputVideo` for the stream's sink). Results travel on the
worker's one result ring and are decoded into `Result`. Data slots travel supervisor to worker on a data
stream's input ring (`data_slot`, `decode_message`): one room data message per slot, in msgpack, and in `a`
the bit set of the stream's processors it is for (bit i: processor i; a route names the processors it sends
to, so one stream serves every data processor of a job with one ring write per message).

Data messages and slot size. A data slot holds one whole message: a message whose encoding is larger than
the stream's slot (`DataFormat.max_message_bytes`, default 20 KiB: every data packet, RPC payload, DTMF
digit and attribute change fits) is refused by the supervisor and counted (`oversize`), never split over
consecutive slots. Splitting was rejected: the ring writes one slot at a time, so a realtime ring that
fills half-way through a message would deliver a torn one (or the producer would need a multi-slot
reservation in both ring implementations), and the worker would keep reassembly state that a restart
loses. Long texts and byte streams (up to `data_stream_max_bytes`) reach a processor that declares a
`max_message_bytes` large enough, at the cost of that much shared memory per queue slot.

Clock. `ts_us` holds the frame time: one clock for every stream of a run, audio and video alike, so the
results of one participant's tracks line up.
- Live: the supervisor's wall clock, in µs since the Unix epoch (`arrival_time_us()`), read when the SDK
  hands the frame to the supervisor: after the network, the jitter buffer and the decoder. It is not the
  capture time, which the SDK does not expose for audio; its video timestamp (`VideoFrameEvent.timestamp_us`)
  is libwebrtc's render time on CLOCK_MONOTONIC, which lines up with nothing else, so it is not used.
- Offline: media time, in µs since the start of the input file (the decoded frame's presentation time; audio
  frames cut by the resampler count samples from the first frame's time).
A result carries the frame time of the frame its processor was handling when it emitted (for a result
emitted by `close()`, the last frame's); an output frame carries the frame time of that input frame too.

Validation. The supervisor trusts nothing a worker writes: `decode_result` and `decode_output` check kind,
format, geometry against length, indices, topic and body before anything reaches a sink, and raise
`SlotError` (a `RingError`), which the pool treats as a worker breaking the protocol. A worker's result ring
is shared by all the streams it hosts, which may belong to different jobs and rooms, so the stream index in
a result slot is not enough to say whose result it is: every result slot starts with its stream's key, a
random 64-bit number the supervisor gives the stream when it attaches it, and a slot whose key is not the
key of the stream its index names is rejected (a processor that writes another stream's index cannot make
its result reach that stream's room without that stream's key). Output frames need no key: each stream has
its own output ring. The worker's decoder
checks kind, format and length too (a supervisor bug must not reach a processor as a misshapen frame).
Encoders check what a processor can get wrong (`AudioShape`, `VideoShape`, `result_slot`).

Cost. The live audio path carries one 10 ms frame per stream: shapes are immutable, so a caller keeps one
while the geometry holds and a push is one method call and one ring write; the worker's decoder builds only
the frame object the processor receives. Output frames and results get one small object each.

Alternatives rejected: a msgspec Struct encoded into the payload (a parse and an allocation per frame, and
the descriptor would still be read by the ring); a typed header built by the C extension (the ring would
have to know every kind, and the Python twin with it); named aliases on the ring's header (`width` holding
a stream index is how the descriptor was misread before this module existed).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import msgspec
import numpy as np

from framepool.ipc.ring import FLAG_GAP, RingError
from framepool.processors.api import AudioFrame, PixelFormat, VideoFrame, frame_bytes
from framepool.processors.messages import DataMessage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from typing_extensions import Buffer

KIND_AUDIO: Final = 1
KIND_VIDEO: Final = 2
KIND_RESULT: Final = 3
KIND_DATA: Final = 4
FMT_S16: Final = 1
FMT_I420: Final = 2
FMT_RGB24: Final = 3
FMT_RGBA: Final = 4
FMT_BYTES: Final = 5
FMT_MSGPACK: Final = 6

MAX_TOPIC_BYTES: Final = 255  # a result's topic, UTF-8
KEY_BYTES: Final = 8  # a result slot's payload starts with its stream's key (see Validation above)
MAX_SAMPLE_RATE: Final = 384_000
MAX_CHANNELS: Final = 8
MAX_DATA_PROCESSORS: Final = 32  # bits of a data slot's `a`


class SlotError(RingError):
    """A descriptor that means nothing valid: unknown kind or format, geometry contradicting the length,
    an index out of range, a topic or body that does not decode."""


class Descriptor(Protocol):
    """A peeked descriptor as either ring implementation returns it (`FrameHeader`)."""

    @property
    def seq(self) -> int: ...
    @property
    def ts_us(self) -> int: ...
    @property
    def kind(self) -> int: ...
    @property
    def fmt(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def a(self) -> int: ...
    @property
    def b(self) -> int: ...
    @property
    def c(self) -> int: ...
    @property
    def length(self) -> int: ...


class Ring(Protocol):
    """The producer side of either ring implementation (`FrameRing.write`)."""

    def write(
        self, data: Buffer, seq: int, ts_us: int, kind: int, fmt: int, flags: int, a: int, b: int, c: int, /
    ) -> bool: ...


def arrival_time_us() -> int:
    """The frame time of a live frame arriving now: the wall clock in µs since the Unix epoch."""
    return time.time_ns() // 1000


# -- pixel formats ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PixelLayout:
    """One pixel format: its Processor API name, its ring code, FFmpeg's name for it and its packing."""

    name: PixelFormat
    code: int
    ffmpeg: str  # pix_fmt of the same memory layout (PyAV)
    depth: int  # bytes per pixel when packed; 0: planar I420 (Y full size, U and V subsampled 2x2)

    def frame_bytes(self, width: int, height: int) -> int:
        return frame_bytes(width, height, self.name)


PIXEL_FORMATS: Final[dict[PixelFormat, PixelLayout]] = {
    layout.name: layout
    for layout in (
        PixelLayout("I420", FMT_I420, "yuv420p", 0),
        PixelLayout("RGB24", FMT_RGB24, "rgb24", 3),
        PixelLayout("RGBA", FMT_RGBA, "rgba", 4),
    )
}
_LAYOUT_OF_CODE: Final = {layout.code: layout for layout in PIXEL_FORMATS.values()}
_LAYOUT_OF_NAME: Final[dict[str, PixelLayout]] = {layout.name: layout for layout in PIXEL_FORMATS.values()}


def pixel_layout(name: str) -> PixelLayout:
    """The layout called `name`; ValueError naming the known formats for anything else."""
    layout = _LAYOUT_OF_NAME.get(name)
    if layout is None:
        raise ValueError(f"unknown pixel format {name!r}: expected one of {', '.join(PIXEL_FORMATS)}")
    return layout


# -- encoders ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioShape:
    """What an audio slot says besides seq and time: interleaved int16 PCM of this rate, width and length."""

    sample_rate: int
    channels: int
    samples: int  # per channel

    def __post_init__(self) -> None:
        fault = _audio_fault(self.sample_rate, self.channels, self.samples)
        if fault:
            raise ValueError(f"audio frame {fault}")

    @property
    def nbytes(self) -> int:
        return self.samples * self.channels * 2

    def write(self, ring: Ring, data: Buffer, seq: int, ts_us: int, flags: int = 0) -> bool:
        """One ring write of `data` under this shape (`ring.write`'s result: False when full)."""
        return ring.write(
            data, seq, ts_us, KIND_AUDIO, FMT_S16, flags, self.sample_rate, self.channels, self.samples
        )


@dataclass(frozen=True, slots=True)
class VideoShape:
    """What a video slot says besides seq and time: a frame of this pixel layout and size."""

    layout: PixelLayout
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"video frame of {self.width}x{self.height} pixels")

    @property
    def nbytes(self) -> int:
        return self.layout.frame_bytes(self.width, self.height)

    def write(self, ring: Ring, data: Buffer, seq: int, ts_us: int, flags: int = 0) -> bool:
        return ring.write(data, seq, ts_us, KIND_VIDEO, self.layout.code, flags, self.width, self.height, 0)


@dataclass(frozen=True, slots=True)
class ResultShape:
    """What a result slot says besides seq and time: whose result it is and where its topic ends."""

    stream: int  # the stream's index on its worker (AttachStream.index)
    processor: int  # the processor's position in the stream's processor list
    topic_bytes: int  # the payload starts with this many bytes of UTF-8 topic; the JSON body follows

    def write(self, ring: Ring, data: Buffer, seq: int, ts_us: int, flags: int = 0) -> bool:
        return ring.write(
            data, seq, ts_us, KIND_RESULT, FMT_BYTES, flags, self.stream, self.processor, self.topic_bytes
        )


@dataclass(frozen=True, slots=True)
class DataShape:
    """What a data slot says besides seq and time: which of the stream's processors the message is for."""

    targets: int  # bit i: processor i

    def __post_init__(self) -> None:
        if not 0 < self.targets < 1 << MAX_DATA_PROCESSORS:
            raise ValueError(
                f"data slot for processors {self.targets:#x}: none, or beyond the 32 a slot names"
            )

    def write(self, ring: Ring, data: Buffer, seq: int, ts_us: int, flags: int = 0) -> bool:
        return ring.write(data, seq, ts_us, KIND_DATA, FMT_MSGPACK, flags, self.targets, 0, 0)


FrameShape = AudioShape | VideoShape | DataShape
SlotShape = AudioShape | VideoShape | DataShape | ResultShape
_data_encoder = msgspec.msgpack.Encoder()
_data_decoder = msgspec.msgpack.Decoder(DataMessage)


def data_slot(message: DataMessage, targets: int) -> tuple[DataShape, bytes]:
    """The shape and payload of a data slot carrying `message` to the processors in the bit set `targets`
    (supervisor); its frame time is the message's `received_us`. The caller compares the payload's length
    with the slot size (a larger message is refused, see the module docstring)."""
    return DataShape(targets), _data_encoder.encode(message)


def result_slot(stream: int, key: int, processor: int, topic: str, body: bytes) -> tuple[ResultShape, bytes]:
    """The shape and payload of a result slot of the stream with index `stream` and key `key`; ValueError
    for a topic over MAX_TOPIC_BYTES."""
    encoded = topic.encode()
    if len(encoded) > MAX_TOPIC_BYTES:
        raise ValueError(f"result topic of {len(encoded)} bytes exceeds {MAX_TOPIC_BYTES}")
    return ResultShape(stream, processor, len(encoded)), key.to_bytes(KEY_BYTES, "little") + encoded + body


def result_slot_bytes(max_body: int) -> int:
    """The slot size of a result ring whose bodies may be `max_body` bytes (key and topic travel in the
    slot)."""
    return KEY_BYTES + MAX_TOPIC_BYTES + max_body


def new_stream_key() -> int:
    """A stream's key (supervisor, at attach): unguessable, so a forged index cannot come with it."""
    return secrets.randbits(8 * KEY_BYTES)


# -- decoders ---------------------------------------------------------------------------------------------


def decode_frame(header: Descriptor, view: memoryview, lost_before: bool) -> AudioFrame | VideoFrame:
    """An input slot as the processor receives it (worker): zero-copy numpy views of `view`. The frame's
    `gap` is set when the ring dropped frames before it (FLAG_GAP) or when `lost_before` says frames were
    lost in a way the ring cannot know (a worker restart)."""
    gap = lost_before or bool(header.flags & FLAG_GAP)
    if header.kind == KIND_AUDIO and header.fmt == FMT_S16:
        try:
            samples = np.frombuffer(view, np.int16).reshape(header.c, header.b)
        except ValueError:
            raise _malformed(header, "audio geometry does not match its length") from None
        return AudioFrame(samples, header.a, header.b, header.ts_us, header.seq, gap)
    if header.kind == KIND_VIDEO:
        layout = _video_layout(header)
        pixels = np.frombuffer(view, np.uint8)
        return VideoFrame(pixels, header.a, header.b, layout.name, header.ts_us, header.seq, gap)
    raise _malformed(header, "not an audio or video frame")


def decode_message(header: Descriptor, view: memoryview, processors: int) -> tuple[DataMessage, int]:
    """A data slot as the worker receives it, for a stream with `processors` processors: the message (a
    copy, it may outlive the slot) and the bit set of the processors it is for. SlotError unless the
    descriptor and the msgpack body check out."""
    if header.kind != KIND_DATA or header.fmt != FMT_MSGPACK:
        raise _malformed(header, "not a data message")
    targets = header.a
    if header.b or header.c or not 0 < targets < 1 << min(processors, MAX_DATA_PROCESSORS):
        raise _malformed(
            header, f"names processors {targets:#x} of a stream with {processors} (b, c must be 0)"
        )
    if header.length != len(view):
        raise _malformed(header, f"claims {header.length} bytes in a view of {len(view)}")
    try:
        return _data_decoder.decode(view), targets
    except msgspec.DecodeError as exc:  # ValidationError included: a field of the wrong type
        raise _malformed(header, f"does not decode as a DataMessage: {exc}") from None


@dataclass(frozen=True, slots=True)
class OutputAudio:
    """A frame of a stream's output audio track (`ctx.publish_audio`), as its sink receives it."""

    data: memoryview  # interleaved int16, valid during the sink call only
    sample_rate: int
    channels: int
    samples: int  # per channel
    frame_time_us: int  # of the input frame it was published for (see Clock in the module docstring)
    seq: int


@dataclass(frozen=True, slots=True)
class OutputVideo:
    """A frame of a stream's output video track (`ctx.publish_video`), as its sink receives it."""

    data: memoryview  # the pixels, valid during the sink call only
    width: int
    height: int
    pixel_format: PixelFormat
    frame_time_us: int
    seq: int


OutputFrame = OutputAudio | OutputVideo


def decode_output(header: Descriptor, view: memoryview) -> OutputFrame:
    """An output slot written by a worker (supervisor); SlotError unless it is a well-formed frame."""
    if header.kind == KIND_AUDIO:
        fault = _audio_fault(header.a, header.b, header.c)
        if header.fmt != FMT_S16:
            fault = f"has format {header.fmt}, not s16"
        elif not fault and header.length != header.b * header.c * 2:
            fault = f"of {header.c} samples x {header.b} channels has {header.length} bytes"
        if fault:
            raise _malformed(header, f"audio frame {fault}")
        return OutputAudio(view, header.a, header.b, header.c, header.ts_us, header.seq)
    if header.kind == KIND_VIDEO:
        layout = _video_layout(header)
        return OutputVideo(view, header.a, header.b, layout.name, header.ts_us, header.seq)
    raise _malformed(header, "not an audio or video frame")


class Result(msgspec.Struct, frozen=True):
    """One `ctx.emit()`, as a sink receives it; `data` is the JSON encoding of what the processor emitted."""

    stream_id: str
    processor: str
    topic: str
    frame_time_us: int  # see Clock in the module docstring
    seq: int  # per processor and stream, from 1
    data: msgspec.Raw


def result_stream(header: Descriptor) -> int:
    """The index of the stream a result slot belongs to (to route it before decoding it)."""
    if header.kind != KIND_RESULT or header.fmt != FMT_BYTES:
        raise _malformed(header, "not a result")
    return header.a


def decode_result(
    header: Descriptor, view: memoryview, stream_id: str, processors: Sequence[str], key: int
) -> Result:
    """A result slot of the stream `stream_id` whose processors are `processors` and whose key is `key`
    (supervisor); copies the payload, so the slot may be released afterwards. SlotError unless every field
    checks out."""
    topic_bytes = header.c
    if header.kind != KIND_RESULT or header.fmt != FMT_BYTES:
        raise _malformed(header, "not a result")
    if header.b >= len(processors):
        raise _malformed(header, f"names processor {header.b} of a stream with {len(processors)}")
    if header.length < KEY_BYTES:
        raise _malformed(header, f"has {header.length} bytes, too few for a stream key")
    if topic_bytes > MAX_TOPIC_BYTES or KEY_BYTES + topic_bytes > header.length:
        raise _malformed(header, f"claims a topic of {topic_bytes} bytes")
    if int.from_bytes(view[:KEY_BYTES], "little") != key:
        raise _malformed(header, f"names stream {header.a} without that stream's key")
    payload = bytes(view[KEY_BYTES:])
    try:
        topic = payload[:topic_bytes].decode()
        body = payload[topic_bytes:]
        msgspec.json.decode(body)
    except (UnicodeDecodeError, msgspec.DecodeError) as exc:
        raise _malformed(header, f"does not decode: {exc}") from None
    return Result(stream_id, processors[header.b], topic, header.ts_us, header.seq, msgspec.Raw(body))


# -- checks shared by the encoders and the decoders -------------------------------------------------------


def _audio_fault(sample_rate: int, channels: int, samples: int) -> str:
    """Why this audio geometry is invalid ("" when it is not)."""
    if not 1 <= sample_rate <= MAX_SAMPLE_RATE:
        return f"at {sample_rate} Hz (1 to {MAX_SAMPLE_RATE})"
    if not 1 <= channels <= MAX_CHANNELS:
        return f"with {channels} channels (1 to {MAX_CHANNELS})"
    if samples < 0:
        return f"of {samples} samples"
    return ""


def _video_layout(header: Descriptor) -> PixelLayout:
    layout = _LAYOUT_OF_CODE.get(header.fmt)
    if layout is None:
        raise _malformed(header, f"video frame has unknown pixel format {header.fmt}")
    width, height = header.a, header.b
    if width < 1 or height < 1 or header.length != layout.frame_bytes(width, height):
        raise _malformed(header, f"{width}x{height} {layout.name} frame has {header.length} bytes")
    return layout


def _malformed(header: Descriptor, why: str) -> SlotError:
    return SlotError(f"malformed slot (kind {header.kind}, seq {header.seq}): {why}")
