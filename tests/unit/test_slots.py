"""The slot codec: every kind round-trips through both ring implementations (and crossed), and what a hostile
or buggy peer could write is rejected with SlotError before it reaches a processor or a sink."""

from __future__ import annotations

import os
import typing
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import numpy as np
import pytest

from framepool.ipc.ring import FLAG_GAP, POLICY_BLOCK, RingError, implementation
from framepool.ipc.slots import (
    FMT_BYTES,
    FMT_I420,
    FMT_S16,
    KEY_BYTES,
    KIND_AUDIO,
    KIND_DATA,
    KIND_RESULT,
    KIND_VIDEO,
    MAX_TOPIC_BYTES,
    PIXEL_FORMATS,
    AudioShape,
    OutputAudio,
    OutputVideo,
    Result,
    SlotError,
    VideoShape,
    decode_frame,
    decode_output,
    decode_result,
    pixel_layout,
    result_slot,
    result_slot_bytes,
    result_stream,
)
from framepool.processors.api import AudioFrame, PixelFormat, VideoFrame, frame_bytes

# (writer, reader): each implementation alone, then C writing for Python and the other way round.
PAIRS = [("c", "c"), ("python", "python"), ("c", "python"), ("python", "c")]


class Pipe:
    """A writer and a reader of the same ring memory, possibly of different implementations."""

    def __init__(self, writer: str, reader: str, slot_size: int) -> None:
        self.writer = implementation(writer).FrameRing.create(2, slot_size, POLICY_BLOCK)
        self.reader = implementation(reader).FrameRing.attach(os.dup(self.writer.fd))

    def read(self, decode: Callable[[Any, memoryview], Any]) -> Any:
        """Decode the next slot; the decoded value must not keep the view (results copy, frames are tested
        while the slot is held and their data dropped before release)."""
        peeked = self.reader.peek()
        assert peeked is not None
        header, view = peeked
        try:
            return decode(header, view)
        finally:
            del view, peeked
            self.reader.release()

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


@pytest.fixture
def pipes() -> Iterator[Callable[[str, str, int], Pipe]]:
    opened: list[Pipe] = []

    def make(writer: str, reader: str, slot_size: int = 4096) -> Pipe:
        opened.append(Pipe(writer, reader, slot_size))
        return opened[-1]

    yield make
    for pipe in opened:
        pipe.close()


def raw(pipe: Pipe, data: bytes, kind: int, fmt: int, a: int, b: int, c: int, seq: int = 1) -> None:
    """Write descriptor words as a hostile or buggy peer would: without the codec."""
    assert pipe.writer.write(data, seq, 1234, kind, fmt, 0, a, b, c)


@pytest.mark.parametrize(("writer", "reader"), PAIRS)
def test_audio_round_trip_to_the_processor_and_to_the_sink(
    pipes: Callable[..., Pipe], writer: str, reader: str
) -> None:
    pipe = pipes(writer, reader)
    samples = np.arange(2 * 441, dtype=np.int16).reshape(441, 2)
    shape = AudioShape(44100, 2, 441)
    assert shape.nbytes == samples.nbytes
    assert shape.write(pipe.writer, samples, 7, 1_700_000_000_000_000, FLAG_GAP)

    def to_processor(header: Any, view: memoryview) -> tuple[Any, ...]:
        frame = decode_frame(header, view, lost_before=False)  # the gap comes from FLAG_GAP
        assert isinstance(frame, AudioFrame)
        fields = (frame.sample_rate, frame.channels, frame.time_us, frame.seq, frame.gap)
        return fields, frame.samples.copy()

    fields, received = pipe.read(to_processor)
    assert fields == (44100, 2, 1_700_000_000_000_000, 7, True)
    assert np.array_equal(received, samples)

    assert shape.write(pipe.writer, samples, 8, 5)

    def to_sink(header: Any, view: memoryview) -> tuple[OutputAudio, bytes]:
        frame = decode_output(header, view)
        assert isinstance(frame, OutputAudio)
        return frame, bytes(frame.data)

    frame, data = pipe.read(to_sink)
    assert (frame.sample_rate, frame.channels, frame.samples, frame.frame_time_us, frame.seq) == (
        44100,
        2,
        441,
        5,
        8,
    )
    assert data == samples.tobytes()


@pytest.mark.parametrize(("writer", "reader"), PAIRS)
@pytest.mark.parametrize("pixel_format", typing.get_args(PixelFormat))
def test_video_round_trip_for_every_pixel_format(
    pipes: Callable[..., Pipe], writer: str, reader: str, pixel_format: PixelFormat
) -> None:
    width, height = 7, 5  # odd: I420 chroma rounds up
    size = frame_bytes(width, height, pixel_format)
    pipe = pipes(writer, reader)
    pixels = (np.arange(size) % 251).astype(np.uint8)
    shape = VideoShape(pixel_layout(pixel_format), width, height)
    assert shape.nbytes == size
    for seq in (1, 2):
        assert shape.write(pipe.writer, pixels, seq, seq * 1000)

    def to_processor(header: Any, view: memoryview) -> tuple[Any, ...]:
        frame = decode_frame(header, view, lost_before=header.seq == 1)  # a restart: no flag, still a gap
        assert isinstance(frame, VideoFrame)
        fields = (frame.width, frame.height, frame.pixel_format, frame.time_us, frame.seq, frame.gap)
        return fields, frame.data.tobytes()

    assert pipe.read(to_processor) == ((7, 5, pixel_format, 1000, 1, True), pixels.tobytes())

    def to_sink(header: Any, view: memoryview) -> tuple[Any, ...]:
        frame = decode_output(header, view)
        assert isinstance(frame, OutputVideo)
        return (frame.width, frame.height, frame.pixel_format, frame.frame_time_us, frame.seq), bytes(
            frame.data
        )

    assert pipe.read(to_sink) == ((7, 5, pixel_format, 2000, 2), pixels.tobytes())


@pytest.mark.parametrize(("writer", "reader"), PAIRS)
def test_result_round_trip(pipes: Callable[..., Pipe], writer: str, reader: str) -> None:
    pipe = pipes(writer, reader, result_slot_bytes(64))
    topic = "ü" * (MAX_TOPIC_BYTES // 2)  # two bytes each: the limit counts UTF-8 bytes
    body = msgspec.json.encode({"level": -3.5, "ok": True})
    shape, data = result_slot(5, KEY, 1, topic, body)
    assert (shape.stream, shape.processor, shape.topic_bytes) == (5, 1, MAX_TOPIC_BYTES - 1)
    assert shape.write(pipe.writer, data, 3, -40)

    def decode(header: Any, view: memoryview) -> tuple[int, Result]:
        return result_stream(header), decode_result(header, view, "room/alice/TR_1", ["first", "second"], KEY)

    index, result = pipe.read(decode)
    assert index == 5
    assert result == Result("room/alice/TR_1", "second", topic, -40, 3, msgspec.Raw(body))


def test_one_pixel_table() -> None:
    assert list(PIXEL_FORMATS) == list(typing.get_args(PixelFormat))  # every API format has a ring code
    assert len({layout.code for layout in PIXEL_FORMATS.values()}) == len(PIXEL_FORMATS)
    for name, layout in PIXEL_FORMATS.items():
        assert layout.name == name and pixel_layout(name) is layout
        assert layout.frame_bytes(640, 480) == frame_bytes(640, 480, name)
        if layout.depth:
            assert layout.frame_bytes(640, 480) == 640 * 480 * layout.depth
    with pytest.raises(ValueError, match=r"unknown pixel format 'NV12': expected one of I420, RGB24, RGBA"):
        pixel_layout("NV12")


def test_the_data_kind_is_reserved_apart_from_the_others() -> None:
    assert len({KIND_AUDIO, KIND_VIDEO, KIND_RESULT, KIND_DATA}) == 4


def test_encoders_refuse_what_a_processor_can_get_wrong() -> None:
    with pytest.raises(ValueError, match="at 0 Hz"):
        AudioShape(0, 1, 480)
    with pytest.raises(ValueError, match="with 9 channels"):
        AudioShape(48000, 9, 480)
    with pytest.raises(ValueError, match="of -1 samples"):
        AudioShape(48000, 1, -1)
    with pytest.raises(ValueError, match="0x480"):
        VideoShape(PIXEL_FORMATS["I420"], 0, 480)
    with pytest.raises(ValueError, match=f"result topic of {MAX_TOPIC_BYTES + 1} bytes exceeds"):
        result_slot(1, KEY, 0, "t" * (MAX_TOPIC_BYTES + 1), b"{}")


def test_slot_error_is_a_ring_error() -> None:
    assert issubclass(SlotError, RingError)


FRAME_FORGERIES = [
    pytest.param(b"\0" * 8, KIND_DATA, 0, 0, 0, 0, "not an audio or video frame", id="data kind"),
    pytest.param(b"\0" * 8, KIND_RESULT, FMT_BYTES, 0, 0, 0, "not an audio or video frame", id="result"),
    pytest.param(b"\0" * 8, KIND_AUDIO, FMT_I420, 48000, 1, 4, "format 2, not s16", id="audio format"),
    pytest.param(b"\0" * 8, KIND_AUDIO, FMT_S16, 48000, 1, 5, "has 8 bytes", id="audio length"),
    pytest.param(b"\0" * 8, KIND_AUDIO, FMT_S16, 48000, 0, 0, "with 0 channels", id="no channels"),
    pytest.param(b"\0" * 8, KIND_AUDIO, FMT_S16, 10**9, 1, 4, "at 1000000000 Hz", id="sample rate"),
    pytest.param(b"\0" * 6, KIND_VIDEO, 99, 2, 1, 0, "unknown pixel format 99", id="pixel format"),
    pytest.param(b"\0" * 6, KIND_VIDEO, FMT_I420, 4, 2, 0, "4x2 I420 frame has 6 bytes", id="video length"),
    pytest.param(b"", KIND_VIDEO, FMT_I420, 0, 5, 0, "0x5 I420 frame", id="video width"),
]


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize(("data", "kind", "fmt", "a", "b", "c", "why"), FRAME_FORGERIES)
def test_malformed_output_frames_are_rejected(
    pipes: Callable[..., Pipe], impl: str, data: bytes, kind: int, fmt: int, a: int, b: int, c: int, why: str
) -> None:
    pipe = pipes(impl, impl)
    raw(pipe, data, kind, fmt, a, b, c)
    with pytest.raises(SlotError, match=f"malformed slot \\(kind {kind}, seq 1\\): .*{why}"):
        pipe.read(decode_output)


@pytest.mark.parametrize(
    ("data", "kind", "fmt", "a", "b", "c"),
    [
        (b"\0" * 8, KIND_DATA, 0, 0, 0, 0),
        (b"\0" * 7, KIND_AUDIO, FMT_S16, 48000, 1, 4),  # odd length: not int16
        (b"\0" * 8, KIND_AUDIO, FMT_S16, 48000, 1, 3),
        (b"\0" * 6, KIND_VIDEO, FMT_I420, 4, 2, 0),
        (b"\0" * 6, KIND_VIDEO, 0, 2, 1, 0),
    ],
)
def test_malformed_input_frames_never_reach_a_processor(
    pipes: Callable[..., Pipe], data: bytes, kind: int, fmt: int, a: int, b: int, c: int
) -> None:
    pipe = pipes("c", "c")
    raw(pipe, data, kind, fmt, a, b, c)
    with pytest.raises(SlotError, match=r"^malformed slot"):
        pipe.read(lambda header, view: decode_frame(header, view, lost_before=False))


KEY = 0x0123456789ABCDEF  # the stream key these tests decode with
K = KEY.to_bytes(KEY_BYTES, "little")
RESULT_FORGERIES = [
    pytest.param(K + b"t{}", KIND_AUDIO, FMT_S16, 1, 0, 1, "not a result", id="kind"),
    pytest.param(K + b"t{}", KIND_RESULT, FMT_S16, 1, 0, 1, "not a result", id="format"),
    pytest.param(
        K + b"t{}", KIND_RESULT, FMT_BYTES, 1, 2, 1, "names processor 2 of a stream with 2", id="index"
    ),
    pytest.param(K + b"t{}", KIND_RESULT, FMT_BYTES, 1, 0, 4, "claims a topic of 4 bytes", id="past the end"),
    pytest.param(
        K + b"t" * 300, KIND_RESULT, FMT_BYTES, 1, 0, 256, "claims a topic of 256 bytes", id="long topic"
    ),
    pytest.param(K + b"\xff{}", KIND_RESULT, FMT_BYTES, 1, 0, 1, "does not decode", id="topic utf-8"),
    pytest.param(K + b't{"a":', KIND_RESULT, FMT_BYTES, 1, 0, 1, "does not decode", id="body json"),
    pytest.param(K + b"t{} {}", KIND_RESULT, FMT_BYTES, 1, 0, 1, "does not decode", id="trailing json"),
    pytest.param(b"t{}", KIND_RESULT, FMT_BYTES, 1, 0, 0, "too few for a stream key", id="no key"),
    pytest.param(
        (KEY + 1).to_bytes(KEY_BYTES, "little") + b"t{}",
        KIND_RESULT,
        FMT_BYTES,
        1,
        0,
        1,
        "names stream 1 without that stream's key",
        id="another stream's key",
    ),
]


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize(("data", "kind", "fmt", "a", "b", "c", "why"), RESULT_FORGERIES)
def test_malformed_results_are_rejected(
    pipes: Callable[..., Pipe], impl: str, data: bytes, kind: int, fmt: int, a: int, b: int, c: int, why: str
) -> None:
    pipe = pipes(impl, impl)
    raw(pipe, data, kind, fmt, a, b, c)
    with pytest.raises(SlotError, match=why):
        pipe.read(lambda header, view: decode_result(header, view, "s", ["p", "q"], KEY))
    if kind != KIND_RESULT or fmt != FMT_BYTES:
        raw(pipe, data, kind, fmt, a, b, c, seq=2)
        with pytest.raises(SlotError, match="not a result"):
            pipe.read(lambda header, view: result_stream(header))
