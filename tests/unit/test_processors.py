"""The built-in processors against reference values (a recording context stands in for the worker runtime)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from framepool.errors import ProcessorError
from framepool.processors import (
    AudioFormat,
    AudioFrame,
    VideoFrame,
    frame_bytes,
    instantiate,
    parse_spec,
    resolve,
)
from framepool.processors.audio_level import AudioLevel, AudioLevelParams
from framepool.processors.video_motion import VideoMotion


class RecordingContext:
    def __init__(self) -> None:
        self.results: list[tuple[str, Any]] = []
        self.video: list[tuple[np.ndarray, int, int, str]] = []
        self._log = logging.LoggerAdapter(logging.getLogger("test"), {})

    @property
    def stream_id(self) -> str:
        return "s1"

    @property
    def labels(self) -> Mapping[str, str]:
        return {}

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._log

    def emit(self, topic: str, payload: Any) -> None:
        self.results.append((topic, payload))

    def publish_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        raise AssertionError("not expected")

    def publish_video(self, data: np.ndarray, width: int, height: int, pixel_format: str = "I420") -> None:
        self.video.append((data.copy(), width, height, pixel_format))


def feed_audio(processor: Any, signal: np.ndarray, frame_samples: int, ctx: RecordingContext) -> None:
    for seq, start in enumerate(range(0, len(signal), frame_samples)):
        chunk = signal[start : start + frame_samples].reshape(-1, 1)
        processor.process(AudioFrame(chunk, 48000, 1, start * 1_000_000 // 48000, seq, False), ctx)


def sine(amplitude: float, seconds: float, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(int(48000 * seconds)) / 48000
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_full_scale_sine_is_minus_3_01_rms_and_0_peak() -> None:
    processor = instantiate(parse_spec("audio-level(window_ms=100)"))
    ctx = RecordingContext()
    feed_audio(processor, sine(32767, 1.0), 480, ctx)
    assert len(ctx.results) == 10
    for topic, payload in ctx.results:
        assert topic == "audio-level"
        assert payload["rms_dbfs"] == -3.01
        assert payload["peak_dbfs"] == 0.0
        assert payload["duration_ms"] == 100.0


def test_half_scale_sine_is_6_02_db_lower() -> None:
    processor = instantiate(parse_spec("audio-level"))
    ctx = RecordingContext()
    feed_audio(processor, sine(16384, 0.2), 480, ctx)
    assert [p["rms_dbfs"] for _, p in ctx.results] == [-9.03, -9.03]
    assert [p["peak_dbfs"] for _, p in ctx.results] == [-6.02, -6.02]


def test_silence_reports_the_floor_and_full_scale_square_is_0_db() -> None:
    processor = instantiate(parse_spec("audio-level(window_ms=10, floor_db=-100)"))
    ctx = RecordingContext()
    square = np.tile(np.array([-32768, -32768, 32767, 32767], np.int16), 120)
    feed_audio(processor, np.concatenate((np.zeros(480, np.int16), square)), 480, ctx)
    assert ctx.results[0][1]["rms_dbfs"] == -100.0
    assert ctx.results[0][1]["peak_dbfs"] == -100.0
    assert ctx.results[1][1]["rms_dbfs"] == 0.0
    assert ctx.results[1][1]["peak_dbfs"] == 0.0


def test_windows_do_not_depend_on_frame_size_and_close_flushes_the_partial_window() -> None:
    signal = sine(10000, 0.35, freq=440)
    outputs = []
    for frame_samples in (480, 4800, 777):
        processor = instantiate(parse_spec("audio-level(window_ms=100)"))
        ctx = RecordingContext()
        feed_audio(processor, signal, frame_samples, ctx)
        processor.close(ctx)
        outputs.append([payload for _, payload in ctx.results])
    assert outputs[0] == outputs[1] == outputs[2]
    assert [p["start_us"] for p in outputs[0]] == [0, 100_000, 200_000, 300_000]
    assert outputs[0][-1]["partial"] is True and outputs[0][-1]["duration_ms"] == 50.0
    expected = round(20 * math.log10(np.sqrt(np.mean(signal[:4800].astype(float) ** 2)) / 32768), 2)
    assert outputs[0][0]["rms_dbfs"] == expected


@pytest.mark.parametrize(
    ("spec", "frame_ms"),
    [
        ("audio-level", 100),
        ("audio-level(window_ms=20)", 20),
        ("audio-level(window_ms=15)", 10),
        ("audio-level(window_ms=500)", 100),
        ("audio-level(window_ms=500, frame_ms=10)", 10),
    ],
)
def test_audio_level_asks_for_frames_as_long_as_its_window(spec: str, frame_ms: int) -> None:
    """Fewer, longer frames cost the supervisor fewer SDK events; the window bounds the latency anyway."""
    fmt = resolve(parse_spec(spec)).fmt
    assert isinstance(fmt, AudioFormat)
    assert fmt.frame_ms == frame_ms


def test_audio_level_declares_its_format() -> None:
    fmt = AudioLevel.input_format(AudioLevelParams(frame_ms=100))  # a classmethod: nothing constructed
    assert (fmt.sample_rate, fmt.channels, fmt.frame_ms) == (48000, 1, 100)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("audio-level(window_ms=abc)", "window_ms"),
        ("audio-level(frame_ms=15)", "frame_ms"),
        ("audio-level(nope=1)", "unknown parameter"),
        ("video-motion(threshold=-1)", "threshold"),
    ],
)
def test_bad_parameters_are_one_line_processor_errors(spec: str, fragment: str) -> None:
    with pytest.raises(ProcessorError) as info:
        resolve(parse_spec(spec))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def i420(luma: np.ndarray) -> VideoFrame:
    height, width = luma.shape
    data = np.full(frame_bytes(width, height, "I420"), 128, np.uint8)
    data[: width * height] = luma.ravel()
    return VideoFrame(data, width, height, "I420", 0, 0, False)


def test_motion_score_is_mean_absolute_luma_difference() -> None:
    processor = instantiate(parse_spec("video-motion(downscale=1, threshold=10)"))
    ctx = RecordingContext()
    base = np.zeros((8, 8), np.uint8)
    moved = base.copy()
    moved[:4, :] = 40  # half the pixels change by 40: mean 20
    for luma in (base, moved, moved):
        processor.process(i420(luma), ctx)
    scores = [p["score"] for _, p in ctx.results if "score" in p and "event" not in p]
    assert scores == [0.0, 20.0, 0.0]


def test_motion_events_have_hysteresis() -> None:
    processor = instantiate(parse_spec("video-motion(downscale=1, threshold=10, hysteresis=0.5)"))
    ctx = RecordingContext()
    levels = [0, 12, 24, 31, 24, 31, 31]  # diffs: -, 12, 12, 7, 7, 7, 0
    for level in levels:
        processor.process(i420(np.full((4, 4), level, np.uint8)), ctx)
    events = [p["event"] for _, p in ctx.results if "event" in p]
    assert events == ["motion_start", "motion_end"]
    end = next(p for _, p in ctx.results if p.get("event") == "motion_end")
    assert end["score"] == 0.0


def test_motion_downscale_emit_every_and_visualisation() -> None:
    processor = instantiate(parse_spec("video-motion(downscale=2, emit_every=2, visualize=true, gain=2)"))
    assert isinstance(processor, VideoMotion)
    ctx = RecordingContext()
    frames = [np.zeros((10, 12), np.uint8), np.full((10, 12), 50, np.uint8), np.full((10, 12), 50, np.uint8)]
    for luma in frames:
        processor.process(i420(luma), ctx)
    scored = [p for _, p in ctx.results if "event" not in p]
    assert len(scored) == 2  # frames 0 and 2
    assert len(ctx.video) == 3
    data, width, height, fmt = ctx.video[1]
    assert (width, height, fmt) == (6, 4, "I420")  # 5 rows subsampled, cropped to even
    assert data.size == frame_bytes(6, 4, "I420")
    assert (data[:24] == 100).all() and (data[24:] == 128).all()


def test_audio_level_is_an_audio_processor() -> None:
    assert AudioLevel.kind == "audio" and VideoMotion.kind == "video"
