"""black-frame against FFmpeg's blackdetect run on the same frames (PyAV's filter graph): the same runs,
reported at the same frames, the same per-picture ratios, on sequences built around every threshold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from framepool.processors import VideoFrame, instantiate, parse_spec
from framepool.processors.black_frame import (
    BlackFrameParams,
    black_pixel_threshold,
    is_black,
    min_duration_us,
    picture_black_ratio,
)
from tests.support.context import RecordingContext, run
from tests.support.lavfi import run_filter, seconds_to_us

WIDTH, HEIGHT = 160, 120
FFMPEG_NAMES = {
    "black_min_duration": "d",
    "picture_black_ratio_th": "pic_th",
    "pixel_black_th": "pix_th",
}


def picture(luma: npt.NDArray[np.uint8] | int, time_us: int, seq: int = 0) -> VideoFrame:
    """An I420 frame of WIDTH × HEIGHT with this luma (an array or one level) and neutral chroma."""
    data = np.full(WIDTH * HEIGHT * 3 // 2, 128, np.uint8)
    data[: WIDTH * HEIGHT] = np.asarray(luma, np.uint8).ravel() if not isinstance(luma, int) else luma
    return VideoFrame(data, WIDTH, HEIGHT, "I420", time_us, seq, False)


def sequence(lumas: Sequence[npt.NDArray[np.uint8] | int], step_us: int = 100_000) -> list[VideoFrame]:
    return [picture(luma, index * step_us, index) for index, luma in enumerate(lumas)]


def with_black_pixels(count: int, black: int = 16, other: int = 120) -> npt.NDArray[np.uint8]:
    """A luma plane with exactly `count` samples at `black` (scattered) and the rest at `other`."""
    luma = np.full(WIDTH * HEIGHT, other, np.uint8)
    luma[np.random.default_rng(count).permutation(luma.size)[:count]] = black
    return luma


def ffmpeg_runs(frames: Sequence[VideoFrame], spec: dict[str, Any]) -> list[tuple[int, int]]:
    """The runs blackdetect logs: (black_start, black_end) in µs."""
    params = BlackFrameParams(**spec)
    args = ":".join(f"{FFMPEG_NAMES[key]}={getattr(params, key)!r}" for key in FFMPEG_NAMES)
    result = run_filter("blackdetect", args, frames, full_range=params.full_range)
    lines = result.lines(r"black_start:(\S+) black_end:(\S+) black_duration:(\S+)")
    runs = [(seconds_to_us(line[1]), seconds_to_us(line[2])) for line in lines]
    for line, (start, end) in zip(lines, runs, strict=True):
        assert seconds_to_us(line[3]) == end - start
    return runs


def our_events(frames: Sequence[VideoFrame], spec: dict[str, Any]) -> RecordingContext:
    args = ", ".join(f"{key}={value!r}".replace("True", "true") for key, value in spec.items())
    return run(instantiate(parse_spec(f"black-frame({args})")), frames)


def our_runs(ctx: RecordingContext) -> list[tuple[int, int]]:
    return [(event["black_start_us"], event["black_end_us"]) for event in ctx.events("black_end")]


def assert_same_as_ffmpeg(frames: Sequence[VideoFrame], **spec: Any) -> list[tuple[int, int]]:
    """Our runs equal blackdetect's; each black_start came at the first frame the run was long enough."""
    expected = ffmpeg_runs(frames, spec)
    ctx = our_events(frames, spec)
    assert our_runs(ctx) == expected
    minimum = min_duration_us(BlackFrameParams(**spec).black_min_duration)
    starts = ctx.events("black_start")
    assert [event["black_start_us"] for event in starts] == [start for start, _end in expected]
    times = [frame.time_us for frame in frames]
    for event in starts:
        assert event["frame_time_us"] == next(t for t in times if t - event["black_start_us"] >= minimum)
    return expected


def test_runs_shorter_and_longer_than_the_minimum() -> None:
    # At 10 fps with d = 1: black for 9, 10 and 11 frames; 10 frames (start to the first bright one) is 1 s.
    lumas = [100] * 3 + [16] * 9 + [100] * 3 + [16] * 10 + [100] * 3 + [16] * 11 + [100] * 3
    runs = assert_same_as_ffmpeg(sequence(lumas), black_min_duration=1.0)
    assert runs == [(1_500_000, 2_500_000), (2_800_000, 3_900_000)]


def test_the_minimum_duration_is_truncated_to_the_time_base_as_ffmpeg_does() -> None:
    """d = 2.01 s is 2009999.99… µs as a double, truncated to 2009999: a run of exactly that is reported."""
    for length_us, reported in [(2_009_998, False), (2_009_999, True), (2_010_000, True)]:
        frames = [picture(100, 0), picture(16, 100_000, 1), picture(100, 100_000 + length_us, 2)]
        runs = assert_same_as_ffmpeg(frames, black_min_duration=2.01)
        assert bool(runs) is reported, length_us


@pytest.mark.parametrize(
    ("pixel_black_th", "full_range"), [(0.10, False), (0.05, False), (0.0, False), (0.10, True), (0.5, True)]
)
def test_pixels_at_and_just_above_the_pixel_threshold(pixel_black_th: float, full_range: bool) -> None:
    threshold = black_pixel_threshold(pixel_black_th, full_range)
    lumas = [220] * 2 + [threshold] * 12 + [220] * 2 + [threshold + 1] * 12 + [220] * 2
    spec = {"black_min_duration": 1.0, "pixel_black_th": pixel_black_th, "full_range": full_range}
    runs = assert_same_as_ffmpeg(sequence(lumas), **spec)
    assert runs == [(200_000, 1_400_000)]


def test_the_default_thresholds_are_37_limited_and_25_full_range() -> None:
    assert black_pixel_threshold(0.10) == 37 and black_pixel_threshold(0.10, full_range=True) == 25


def test_pictures_at_and_just_below_the_picture_ratio_threshold() -> None:
    """pic_th = 0.98 of 19200 samples is 18816 black samples: a picture with one fewer is not black."""
    needed = round(0.98 * WIDTH * HEIGHT)
    lumas = [120] * 2 + [with_black_pixels(needed)] * 12 + [120] * 2 + [with_black_pixels(needed - 1)] * 12
    runs = assert_same_as_ffmpeg(sequence(lumas + [120] * 2), black_min_duration=1.0)
    assert runs == [(200_000, 1_400_000)]


def test_noisy_black_and_fades_give_the_same_runs_and_ratios() -> None:
    rng = np.random.default_rng(7)
    fade = [
        np.clip(level + rng.normal(0, 4, WIDTH * HEIGHT), 0, 255).astype(np.uint8)
        for level in range(110, 10, -5)
    ]
    hold = [np.clip(22 + rng.normal(0, 6, WIDTH * HEIGHT), 0, 255).astype(np.uint8) for _ in range(25)]
    frames = sequence([120] * 3 + fade + hold + fade[::-1] + [120] * 3, step_us=40_000)
    spec = {"black_min_duration": 0.5, "picture_black_ratio_th": 0.9, "emit_ratio": True}
    assert len(assert_same_as_ffmpeg(frames, **spec)) == 1

    logged = run_filter("blackdetect", "d=0.5:pic_th=0.9", frames).lines(
        r"picture_black_ratio:(\S+) pts:(\d+)"
    )
    ours = [
        payload for _topic, payload in our_events(frames, spec).results if "picture_black_ratio" in payload
    ]
    assert [int(line[2]) for line in logged] == [payload["frame_time_us"] for payload in ours]
    # FFmpeg prints the ratio with 6 decimals.
    assert [float(line[1]) for line in logged] == pytest.approx(
        [p["picture_black_ratio"] for p in ours], abs=5e-7
    )
    assert {0.0, 1.0} < {p["picture_black_ratio"] for p in ours}  # the fades pass through partial ratios


def test_a_run_open_at_the_end_is_reported_at_the_last_frame_as_ffmpeg_does_at_eof() -> None:
    long_enough = sequence([120] * 3 + [16] * 12)  # black from 0.3 s to the last frame at 1.4 s
    assert assert_same_as_ffmpeg(long_enough, black_min_duration=1.0) == [(300_000, 1_400_000)]
    [end] = our_events(long_enough, {"black_min_duration": 1.0}).events("black_end")
    assert end["stream_ended"] is True
    too_short = sequence([120] * 3 + [16] * 10)  # 0.3 s to 1.2 s: 0.9 s
    assert assert_same_as_ffmpeg(too_short, black_min_duration=1.0) == []


def test_a_long_mixed_clip_gives_the_same_runs() -> None:
    """60 s at 30 fps: moving pictures, cuts and fades to black, black runs of random length around d,
    noisy black and dark scenes near the thresholds."""
    rng = np.random.default_rng(12)
    gradient = np.add.outer(np.arange(HEIGHT), np.arange(WIDTH)).astype(np.int16)
    lumas: list[npt.NDArray[np.uint8]] = []
    while len(lumas) < 1800:
        kind = rng.choice(["moving", "black", "dark", "fade"])
        length = int(rng.integers(20, 100) if kind == "black" else rng.integers(3, 60))
        bright_share = rng.uniform(0, 0.04)  # a black segment's share of bright samples: pic_th is 0.98
        for index in range(length):
            if kind == "moving":
                plane = (gradient + 3 * (len(lumas) + index)) % 200 + 30
            elif kind == "black":
                plane = 16 + rng.integers(0, 12, gradient.shape)
                plane[rng.random(gradient.shape) < bright_share] = 200
            elif kind == "dark":
                plane = rng.integers(20, 50, gradient.shape)
            else:
                plane = gradient % 100 + 120 - 120 * index // length
            lumas.append(np.clip(plane, 0, 255).astype(np.uint8))
    frames = sequence(lumas, step_us=33_333)
    for spec in [{}, {"black_min_duration": 0.5, "picture_black_ratio_th": 0.9, "pixel_black_th": 0.12}]:
        assert len(assert_same_as_ffmpeg(frames, **spec)) >= 3


def test_the_reusable_functions_agree_with_the_processor() -> None:
    assert is_black(np.full((HEIGHT, WIDTH), 37, np.uint8))
    assert not is_black(np.full((HEIGHT, WIDTH), 38, np.uint8))
    assert not is_black(with_black_pixels(round(0.98 * WIDTH * HEIGHT) - 1).reshape(HEIGHT, WIDTH))
    assert is_black(np.full((HEIGHT, WIDTH), 60, np.uint8), BlackFrameParams(pixel_black_th=0.25))
    assert picture_black_ratio(with_black_pixels(4800), 37) == 0.25


def test_the_summary_counts_frames_and_reported_runs() -> None:
    lumas = [120] * 3 + [16] * 12 + [120] * 3 + [16] * 5 + [120] * 2
    ctx = our_events(sequence(lumas), {"black_min_duration": 1.0})
    [summary] = ctx.events("summary")
    assert summary == {
        "event": "summary", "frames": 25, "black_frames": 17, "black_runs": 1, "black_us": 1_200_000
    }  # fmt: skip
    assert all(topic == "black-frame" for topic, _payload in ctx.results)
