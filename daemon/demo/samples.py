"""Deterministic test media: a tone and a moving test pattern (supervisor side: the demo, tests, live
publishing).

Everything is a pure function of the sample/frame index, so a sample written twice is the same media, a
test can predict what processors must see, and a live publisher can produce the same signal frame by frame.

The tone is a 440 Hz sine at a quiet level with a louder passage (`loud` seconds); the picture is SMPTE-like
colour bars with a checkered square that moves during `moving` intervals and stands still otherwise, so
audio-level sees a level step and video-motion sees motion start and end.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from framepool.errors import InputError

# 75 % colour bars: white, yellow, cyan, green, magenta, red, blue.
_BARS = np.array(
    [[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0], [191, 0, 191], [191, 0, 0], [0, 0, 191]],
    np.uint8,
)
DEFAULT_LOUD = (4.0, 6.0)
DEFAULT_MOVING = ((2.0, 5.0), (7.0, 9.0))


def tone_samples(
    start: int,
    count: int,
    *,
    frequency: float = 440.0,
    sample_rate: int = 48000,
    amplitude: float = 0.1,
    loud: tuple[float, float] | None = DEFAULT_LOUD,
    loud_amplitude: float = 0.7,
) -> npt.NDArray[np.int16]:
    """Samples [start, start+count) of the tone, int16 mono; `amplitude` is relative to full scale."""
    index = np.arange(start, start + count, dtype=np.int64)
    gain = np.full(count, amplitude)
    if loud is not None:
        seconds = index / sample_rate
        gain[(seconds >= loud[0]) & (seconds < loud[1])] = loud_amplitude
    # Phase from the integer index modulo the period keeps long runs exact in float64.
    phase = 2 * np.pi * ((index * frequency) % sample_rate) / sample_rate
    return np.round(gain * 32767 * np.sin(phase)).astype(np.int16)


def tone(
    seconds: float | None = None,
    *,
    frame_ms: int = 10,
    sample_rate: int = 48000,
    frequency: float = 440.0,
    amplitude: float = 0.1,
    loud: tuple[float, float] | None = DEFAULT_LOUD,
) -> Iterator[npt.NDArray[np.int16]]:
    """Frames of `frame_ms` of the tone, (samples, 1) int16; endless when `seconds` is None."""
    per_frame = sample_rate * frame_ms // 1000
    total = None if seconds is None else int(seconds * sample_rate)
    start = 0
    while total is None or start < total:
        count = per_frame if total is None else min(per_frame, total - start)
        yield tone_samples(
            start, count, frequency=frequency, sample_rate=sample_rate, amplitude=amplitude, loud=loud
        ).reshape(-1, 1)
        start += count


def square_position(
    index: int, fps: float, width: int, height: int, moving: Sequence[tuple[float, float]]
) -> tuple[int, int]:
    """Top-left corner of the square in frame `index`: it advances only while inside a `moving` interval."""
    moved_frames = 0
    for begin, end in moving:
        first, last = round(begin * fps), round(end * fps)
        moved_frames += max(0, min(index, last) - first)
    size = square_size(width, height)
    span_x, span_y = max(1, width - size), max(1, height - size)
    step = max(2, width // 20)
    x, y = (moved_frames * step) % (2 * span_x), (moved_frames * step * 3 // 4) % (2 * span_y)
    return (x if x < span_x else 2 * span_x - x), (y if y < span_y else 2 * span_y - y)


def square_size(width: int, height: int) -> int:
    return max(8, min(width, height) // 2) & ~7


def test_pattern_frame(
    index: int,
    width: int = 320,
    height: int = 240,
    *,
    fps: float = 30.0,
    moving: Sequence[tuple[float, float]] = DEFAULT_MOVING,
) -> npt.NDArray[np.uint8]:
    """Frame `index` of the pattern as RGB24, shape (height, width, 3)."""
    columns = np.arange(width) * len(_BARS) // width
    frame = np.broadcast_to(_BARS[columns], (height, width, 3)).copy()
    size = square_size(width, height)
    x, y = square_position(index, fps, width, height, moving)
    cells = (np.add.outer(np.arange(size) // 8, np.arange(size) // 8) % 2).astype(np.uint8) * 255
    frame[y : y + size, x : x + size] = cells[: height - y, : width - x, None]
    return frame


@dataclass(frozen=True, slots=True)
class SampleInfo:
    path: Path
    video_frames: int
    audio_samples: int
    width: int
    height: int
    fps: int
    sample_rate: int


_CODECS = {
    ".mp4": ("mpeg4", "aac"),
    ".mkv": ("mpeg4", "aac"),
    ".mov": ("mpeg4", "aac"),
    ".webm": ("libvpx", "libopus"),
}


def write_test_sample(
    path: Path,
    seconds: float = 10.0,
    *,
    width: int = 320,
    height: int = 240,
    fps: int = 30,
    sample_rate: int = 48000,
    audio: bool = True,
    video: bool = True,
) -> SampleInfo:
    """Encode `seconds` of tone and test pattern to `path` (.mp4/.mkv/.mov: MPEG-4 + AAC; .webm: VP8 +
    Opus)."""
    codecs = _CODECS.get(path.suffix.lower())
    if codecs is None:
        raise InputError(
            f"cannot write a sample as {path.suffix or 'no extension'}: use one of {', '.join(_CODECS)}"
        )
    frames = int(seconds * fps) if video else 0
    samples = int(seconds * sample_rate) if audio else 0
    with av.open(str(path), "w") as container:
        vstream = _video_stream(container, codecs[0], width, height, fps) if video else None
        astream = _audio_stream(container, codecs[1], sample_rate) if audio else None
        # Interleave by time so the file streams like a real recording.
        audio_chunk = sample_rate // fps
        for index in range(max(frames, -(-samples // audio_chunk))):
            if vstream is not None and index < frames:
                picture = av.VideoFrame.from_ndarray(
                    test_pattern_frame(index, width, height, fps=fps), format="rgb24"
                )
                picture.pts = index
                container.mux(vstream.encode(picture.reformat(format="yuv420p")))
            start = index * audio_chunk
            if astream is not None and start < samples:
                _mux_audio(container, astream, start, min(audio_chunk, samples - start), sample_rate)
        for stream in (vstream, astream):
            if stream is not None:
                container.mux(stream.encode(None))
    return SampleInfo(path, frames, samples, width, height, fps, sample_rate)


def _video_stream(
    container: av.container.OutputContainer, codec: str, width: int, height: int, fps: int
) -> av.VideoStream:
    stream = container.add_stream(codec, rate=fps)
    assert isinstance(stream, av.VideoStream)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = fractions.Fraction(1, fps)
    stream.codec_context.bit_rate = 1_000_000
    stream.codec_context.thread_count = 1  # deterministic output
    return stream


def _audio_stream(container: av.container.OutputContainer, codec: str, rate: int) -> av.AudioStream:
    stream = container.add_stream(codec, rate=rate, layout="mono")
    assert isinstance(stream, av.AudioStream)
    return stream


def _mux_audio(
    container: av.container.OutputContainer, stream: av.AudioStream, start: int, count: int, rate: int
) -> None:
    pcm = tone_samples(start, count, sample_rate=rate).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate, frame.pts = rate, start
    container.mux(stream.encode(frame))
