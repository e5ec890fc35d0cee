"""Decode/convert for the offline runner and the processed-media writer, on generated samples."""

from __future__ import annotations

import dataclasses
import fractions
from pathlib import Path

import av
import numpy as np
import pytest

from framepool.demo.samples import square_position, tone_samples, write_test_sample
from framepool.demo.samples import test_pattern_frame as pattern_frame
from framepool.errors import ConfigError, InputError
from framepool.ipc import ring
from framepool.ipc.slots import PIXEL_FORMATS, AudioShape, FrameShape, OutputFrame, VideoShape, decode_output
from framepool.offline import media
from framepool.offline.media import (
    AudioConverter,
    MediaOutput,
    VideoConverter,
    decoded_frames,
    fit_within,
    open_input,
    output_rate,
)
from framepool.processors.api import AudioFormat, VideoFormat, frame_bytes


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "sample.mkv"
    write_test_sample(path, 1.0, width=160, height=120, fps=10)
    return path


def test_sample_generator_is_deterministic_and_has_a_loud_passage() -> None:
    quiet = tone_samples(0, 4800)
    loud = tone_samples(4 * 48000, 4800)
    assert np.array_equal(quiet, tone_samples(0, 4800))
    assert 3000 < np.abs(quiet).max() < 3400 and np.abs(loud).max() > 22000
    assert square_position(0, 30, 320, 240, [(2, 5)]) == square_position(60, 30, 320, 240, [(2, 5)])
    assert square_position(61, 30, 320, 240, [(2, 5)]) != square_position(60, 30, 320, 240, [(2, 5)])
    assert np.array_equal(pattern_frame(70), pattern_frame(70))
    assert pattern_frame(0, 64, 48).shape == (48, 64, 3)


def test_audio_is_converted_to_declared_frames(sample: Path) -> None:
    converter = AudioConverter(AudioFormat(sample_rate=16000, channels=1, frame_ms=20))
    container = open_input(sample)
    frames = []
    for _index, frame in decoded_frames(container):
        if isinstance(frame, av.AudioFrame):
            frames.extend(converter.convert(frame))
    frames.extend(converter.convert(None))
    container.close()
    assert all(f.data.dtype == np.int16 and f.data.shape[1] == 1 for f in frames)
    assert all(f.data.shape[0] == 320 for f in frames[:-1]) and 0 < frames[-1].data.shape[0] <= 320
    assert frames[0].shape == AudioShape(16000, 1, 320)
    assert sum(f.data.shape[0] for f in frames) == pytest.approx(
        16000, abs=400
    )  # encoder priming may add a little
    assert [f.frame_time_us for f in frames[:3]] == [frames[0].frame_time_us + i * 20_000 for i in range(3)]


@pytest.mark.parametrize(("pixel_format", "depth"), [("I420", 1.5), ("RGB24", 3), ("RGBA", 4)])
def test_video_is_converted_and_scaled_down(sample: Path, pixel_format: str, depth: float) -> None:
    fmt = VideoFormat(pixel_format=pixel_format, max_width=81, max_height=0)  # type: ignore[arg-type]
    converter = VideoConverter(fmt, 160, 120, fractions.Fraction(10))
    container = open_input(sample)
    frames = [
        c for _i, f in decoded_frames(container) if isinstance(f, av.VideoFrame) for c in converter.convert(f)
    ]
    container.close()
    assert len(frames) == 10
    width = 80 if pixel_format == "I420" else 81
    assert frames[0].shape == VideoShape(PIXEL_FORMATS[pixel_format], width, 60)  # type: ignore[index]
    assert frames[0].data.nbytes == frame_bytes(width, 60, pixel_format) == int(width * 60 * depth)  # type: ignore[arg-type]
    assert [f.frame_time_us for f in frames[:2]] == [0, 100_000]  # media time


def test_fit_within_keeps_aspect_and_even_sizes() -> None:
    assert fit_within(1920, 1080, 1280, 0, True) == (1280, 720)
    assert fit_within(1920, 1080, 0, 0, True) == (1920, 1080)
    assert fit_within(101, 51, 0, 0, True) == (100, 50)
    assert fit_within(640, 480, 320, 120, False) == (160, 120)


def test_unreadable_inputs_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_input(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not media" * 100)
    with pytest.raises(InputError, match="cannot be read as media"):
        open_input(junk)


def ring_frames(frames: list[tuple[bytes, FrameShape]]) -> list[OutputFrame]:
    """Output frames as the pool delivers them: through a real ring and the slot codec (each keeps a copy of
    its payload, since the ring's view dies at release)."""
    frame_ring = ring.FrameRing.create(len(frames) + 1, max(len(f[0]) for f in frames), ring.POLICY_BLOCK)
    out: list[OutputFrame] = []
    try:
        for seq, (data, shape) in enumerate(frames):
            assert shape.write(frame_ring, data, seq, seq * 1000)
        for _ in frames:
            peeked = frame_ring.peek()
            assert peeked is not None
            header, view = peeked
            out.append(dataclasses.replace(decode_output(header, view), data=memoryview(bytes(view))))
            view.release()
            frame_ring.release()
    finally:
        frame_ring.close()
    return out


def test_media_output_holds_frames_until_every_track_appears(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    output = MediaOutput(path, {"video1": fractions.Fraction(10), "audio0": None})
    gray = np.full(frame_bytes(64, 48, "I420"), 90, np.uint8).tobytes()
    rgb = np.full(64 * 48 * 3, 200, np.uint8).tobytes()
    pcm = tone_samples(0, 4800).tobytes()
    i420, rgb24 = VideoShape(PIXEL_FORMATS["I420"], 64, 48), VideoShape(PIXEL_FORMATS["RGB24"], 64, 48)
    video = ring_frames([(gray, i420)] * 4 + [(rgb, rgb24)])
    audio = ring_frames([(pcm, AudioShape(48000, 1, 4800))] * 5)
    for frame in video:
        output.write("video1", frame)
    assert not path.exists()  # the audio track has not published yet
    for frame in audio:
        output.write("audio0", frame)
    output.close()
    assert output.frames_written() == {"video1": 5, "audio0": 5} and output.lost_frames == 0
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5
    with av.open(str(path)) as container:
        assert sum(f.samples for f in container.decode(audio=0)) >= 24000


def test_media_output_rejects_unknown_extensions_and_writes_nothing_without_frames(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot write media as \.xyz"):
        MediaOutput(tmp_path / "out.xyz", {})
    output = MediaOutput(tmp_path / "none.webm", {"video0": None})
    output.close()
    assert not (tmp_path / "none.webm").exists()


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (None, fractions.Fraction(30)),
        (fractions.Fraction(30000, 1001), fractions.Fraction(30000, 1001)),  # NTSC stays exact
        (fractions.Fraction(3600000, 120019), fractions.Fraction(12628, 421)),  # irregular frame times
        (fractions.Fraction(90000), fractions.Fraction(240)),
        (fractions.Fraction(1, 5), fractions.Fraction(1)),
    ],
)
def test_output_rate_is_one_every_codec_accepts(
    rate: fractions.Fraction | None, expected: fractions.Fraction
) -> None:
    chosen = output_rate(rate)
    assert chosen == expected and chosen.denominator <= 1001 and 1 <= chosen <= 240


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_media_output_writes_an_input_rate_with_a_large_denominator(tmp_path: Path, suffix: str) -> None:
    """3600000/120019 fps (irregular frame times): as a time base, 120019/3600000 is beyond what MPEG-4
    accepts (the encoder failed once per frame)."""
    path = tmp_path / f"out{suffix}"
    output = MediaOutput(path, {"video0": fractions.Fraction(3600000, 120019)})
    gray = np.full(frame_bytes(64, 48, "I420"), 90, np.uint8).tobytes()
    for frame in ring_frames([(gray, VideoShape(PIXEL_FORMATS["I420"], 64, 48))] * 6):
        output.write("video0", frame)
    output.close()
    assert output.failure == "" and output.frames_written() == {"video0": 6}
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6


def test_an_encoder_that_cannot_open_is_one_config_error_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(media.OUTPUT_CODECS, ".mp4", ("no-such-encoder", "aac"))
    with pytest.raises(ConfigError, match=r"^cannot write .*out\.mp4: encoder no-such-encoder"):
        MediaOutput(tmp_path / "out.mp4", {"video0": None})
    assert not (tmp_path / "out.mp4").exists()


def test_an_encoder_failing_during_the_run_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = MediaOutput(tmp_path / "out.mp4", {"audio0": None})
    odd = tone_samples(0, 1234).tobytes()  # 1234 Hz: a sample rate AAC cannot encode
    for frame in ring_frames([(odd, AudioShape(1234, 1, 1234))] * 5):
        output.write("audio0", frame)
    output.close()
    assert output.failure and output.lost_frames == 5
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "cannot write" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
