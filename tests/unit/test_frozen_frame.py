"""frozen-frame against FFmpeg's freezedetect run on the same frames (PyAV's filter graph): the same
freeze_start / freeze_end at the same frames with the same values, on sequences built around the noise
threshold and the minimum duration. Frames are at least 128 pixels wide: see tests/support/lavfi.py for the
FFmpeg SIMD fault on narrower ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from framepool.processors import VideoFrame, frame_bytes, instantiate, parse_spec
from framepool.processors.frozen_frame import FrozenFrameParams, frame_difference, is_frozen, noise_ratio
from tests.support.context import RecordingContext, run
from tests.support.lavfi import run_filter, seconds_to_us

WIDTH, HEIGHT = 160, 120
COMPARED = WIDTH * HEIGHT + 2 * (WIDTH // 2) * (HEIGHT // 2)  # the samples freezedetect compares
Event = tuple[Any, ...]


def random_picture(seed: int, width: int = WIDTH, height: int = HEIGHT) -> npt.NDArray[np.uint8]:
    """An I420 buffer of random samples in 20..230, so ±1 changes never clip."""
    return np.random.default_rng(seed).integers(20, 231, frame_bytes(width, height, "I420"), dtype=np.uint8)


def changed(data: npt.NDArray[np.uint8], total: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """`data` (an even-height picture, whose whole buffer is compared) with a SAD of `total` spread over Y,
    U and V: every sample raised by total // samples, then some by one more."""
    every, rest = divmod(total, COMPARED)
    out = data + np.uint8(every)
    out[np.random.default_rng(seed).permutation(COMPARED)[:rest]] += 1
    return out


def frames_at(
    datas: Sequence[npt.NDArray[np.uint8]], times_us: Sequence[int], height: int = HEIGHT
) -> list[VideoFrame]:
    return [
        VideoFrame(data, WIDTH, height, "I420", time_us, seq, False)
        for seq, (data, time_us) in enumerate(zip(datas, times_us, strict=True))
    ]


def at_10fps(datas: Sequence[npt.NDArray[np.uint8]], height: int = HEIGHT) -> list[VideoFrame]:
    return frames_at(datas, [index * 100_000 for index in range(len(datas))], height)


def ffmpeg_events(frames: Sequence[VideoFrame], noise: float | str, duration: float) -> list[Event]:
    """freezedetect's metadata as (event, frame time, value[, duration]) in µs."""
    events: list[Event] = []
    for pts, metadata in run_filter("freezedetect", f"n={noise}:d={duration}", frames).metadata:
        if "lavfi.freezedetect.freeze_start" in metadata:
            events.append(("freeze_start", pts, seconds_to_us(metadata["lavfi.freezedetect.freeze_start"])))
        if "lavfi.freezedetect.freeze_end" in metadata:
            end = seconds_to_us(metadata["lavfi.freezedetect.freeze_end"])
            events.append(
                ("freeze_end", pts, end, seconds_to_us(metadata["lavfi.freezedetect.freeze_duration"]))
            )
    return events


def our_run(frames: Sequence[VideoFrame], noise: float | str, duration: float) -> RecordingContext:
    return run(instantiate(parse_spec(f"frozen-frame(noise={noise}, duration={duration})")), frames)


def our_events(ctx: RecordingContext) -> list[Event]:
    events: list[Event] = []
    for event in ctx.events():
        if event["event"] == "freeze_start":
            events.append(("freeze_start", event["frame_time_us"], event["freeze_start_us"]))
        elif event["event"] == "freeze_end" and not event["stream_ended"]:
            events.append(
                ("freeze_end", event["frame_time_us"], event["freeze_end_us"], event["freeze_duration_us"])
            )
    return events


def assert_same_as_ffmpeg(
    frames: Sequence[VideoFrame], noise: float | str = 0.001, duration: float = 2.0
) -> list[Event]:
    expected = ffmpeg_events(frames, noise, duration)
    assert our_events(our_run(frames, noise, duration)) == expected
    return expected


@pytest.mark.parametrize("noise", [0.001, "-60dB", 0.0005, "-50dB", 0.01])
def test_differences_just_below_and_above_the_noise_threshold(noise: float | str) -> None:
    """A SAD of floor(noise × 256 × samples) is frozen, one more is a change."""
    limit = int(noise_ratio(noise) * 256 * COMPARED)
    base = random_picture(1)
    at_limit, over = changed(base, limit, seed=2), changed(base, limit + 1, seed=3)
    datas = [base] + [at_limit] * 15 + [over] * 15 + [random_picture(4)] * 2
    events = assert_same_as_ffmpeg(at_10fps(datas), noise, duration=1.0)
    assert events == [
        ("freeze_start", 1_000_000, 0),
        ("freeze_end", 1_600_000, 1_600_000, 1_600_000),
        ("freeze_start", 2_600_000, 1_600_000),
        ("freeze_end", 3_100_000, 3_100_000, 1_500_000),
    ]


@pytest.mark.parametrize(
    ("change_after_us", "reported"), [(999_999, False), (1_000_000, True), (1_000_001, True)]
)
def test_a_still_ending_just_before_at_or_after_the_minimum_duration(
    change_after_us: int, reported: bool
) -> None:
    """The still begins at 0.5 s; the changed picture comes `change_after_us` later (the last frozen frame
    0.1 s before it): FFmpeg measures to the changed picture."""
    still, moved = random_picture(1), random_picture(2)
    times = [0, 500_000, 600_000, 700_000, 800_000, 900_000, 1_000_000, 1_300_000, 500_000 + change_after_us]
    datas = [random_picture(3)] + [still] * 7 + [moved]
    events = assert_same_as_ffmpeg(frames_at(datas, times), duration=1.0)
    end = 500_000 + change_after_us
    assert events == (
        [("freeze_start", end, 500_000), ("freeze_end", end, end, change_after_us)] if reported else []
    )


def test_a_gap_longer_than_the_duration_reports_a_freeze_at_the_next_picture() -> None:
    datas = [random_picture(seed) for seed in range(4)]
    events = assert_same_as_ffmpeg(frames_at(datas, [0, 100_000, 2_300_000, 2_400_000]), duration=2.0)
    assert events == [("freeze_start", 2_300_000, 100_000), ("freeze_end", 2_300_000, 2_300_000, 2_200_000)]


def test_a_slow_drift_adds_up_against_the_reference_picture() -> None:
    """Each picture differs from the previous by far less than the noise, but the reference stays the first
    picture of the still until the accumulated difference exceeds the noise."""
    datas = [random_picture(1)]
    for step in range(60):
        datas.append(changed(datas[-1], 1500, seed=step))
    events = assert_same_as_ffmpeg(at_10fps(datas), duration=0.3)
    assert len(events) >= 6


def test_odd_height_ignores_the_last_chroma_row_as_ffmpeg_does() -> None:
    height = HEIGHT - 1
    base = random_picture(1, height=height)
    chroma_width, chroma_rows = WIDTH // 2, (height + 1) // 2
    last_u_row = base.copy()
    start = WIDTH * height + chroma_width * (chroma_rows - 1)
    last_u_row[start : start + chroma_width] = 255  # a large change in the row freezedetect skips
    datas = [base] + [last_u_row] * 12 + [random_picture(2, height=height)]
    events = assert_same_as_ffmpeg(at_10fps(datas, height), duration=1.0)
    assert events[0] == ("freeze_start", 1_000_000, 0)
    assert frame_difference(base, last_u_row, WIDTH, height) == 0


def test_a_long_mixed_clip_gives_the_same_freezes() -> None:
    """60 s at 25 fps: moving pictures, exact stills, stills with noise just under and over the threshold,
    slow drifts; stills of random length around the minimum duration."""
    rng = np.random.default_rng(5)
    datas: list[npt.NDArray[np.uint8]] = []
    while len(datas) < 1500:
        kind = rng.choice(["moving", "still", "noisy", "drift"])
        length = int(rng.integers(5, 30) if kind == "moving" else rng.integers(30, 80))
        still = random_picture(int(rng.integers(1 << 30)))
        share = rng.uniform(0.15, 0.4)  # ±1 on this share of samples: a difference near 0.001 (1/256 × share)
        for _ in range(length):
            if kind == "moving":
                datas.append(random_picture(int(rng.integers(1 << 30))))
            elif kind == "still":
                datas.append(still)
            elif kind == "noisy":
                datas.append(changed(still, int(share * COMPARED), seed=int(rng.integers(1 << 30))))
            else:
                still = changed(still, int(rng.integers(200, 2000)), seed=len(datas))
                datas.append(still)
    frames = frames_at(datas, [index * 40_000 for index in range(len(datas))])
    for noise, duration in [(0.001, 2.0), ("-55dB", 1.0)]:
        assert len(assert_same_as_ffmpeg(frames, noise, duration)) >= 10


def test_a_freeze_open_at_the_end_is_closed_at_the_last_frame() -> None:
    """FFmpeg leaves it open (a freeze_start only); close() ends it, flagged stream_ended."""
    still = random_picture(1)
    frames = at_10fps([random_picture(2)] + [still] * 15)
    assert assert_same_as_ffmpeg(frames, duration=1.0) == [("freeze_start", 1_100_000, 100_000)]
    ctx = our_run(frames, 0.001, 1.0)
    [end] = ctx.events("freeze_end")
    assert (end["freeze_start_us"], end["freeze_end_us"], end["stream_ended"]) == (100_000, 1_500_000, True)
    [summary] = ctx.events("summary")
    assert summary == {"event": "summary", "frames": 16, "freezes": 1, "frozen_us": 1_400_000}


def test_a_new_picture_size_counts_as_a_change() -> None:
    small = VideoFrame(random_picture(1, 128, 96), 128, 96, "I420", 1_500_000, 15, False)
    frames = [*at_10fps([random_picture(2)] * 15), small]
    ctx = our_run(frames, 0.001, 1.0)
    assert our_events(ctx) == [
        ("freeze_start", 1_000_000, 0),
        ("freeze_end", 1_500_000, 1_500_000, 1_500_000),
    ]


def test_the_reusable_functions() -> None:
    """frame_difference is freezedetect's mean absolute difference: checked against a plain numpy sum over
    the compared samples, odd and even sizes; is_frozen applies FFmpeg's default noise."""
    for width, height in [(160, 120), (161, 121), (1280, 720)]:
        first, second = random_picture(1, width, height), random_picture(2, width, height)
        chroma = ((width + 1) // 2) * ((height + 1) // 2)
        compared = ((width + 1) // 2) * (height // 2)
        luma = width * height
        parts = [slice(0, luma), slice(luma, luma + compared), slice(luma + chroma, luma + chroma + compared)]
        total = sum(int(np.abs(first[part].astype(int) - second[part].astype(int)).sum()) for part in parts)
        assert frame_difference(first, second, width, height) == total / (luma + 2 * compared) / 256
    base = random_picture(3)
    assert is_frozen(base, changed(base, 7372), WIDTH, HEIGHT)
    assert not is_frozen(base, changed(base, 7373), WIDTH, HEIGHT)
    assert is_frozen(base, changed(base, 14000), WIDTH, HEIGHT, FrozenFrameParams(noise="-54dB"))


def test_noise_in_decibels_is_parsed_as_ffmpeg_parses_it() -> None:
    assert noise_ratio("-60dB") == pytest.approx(0.001, rel=1e-12)
    assert noise_ratio("-20 dB") == pytest.approx(0.1, rel=1e-12)
    with pytest.raises(Exception, match="noise"):
        instantiate(parse_spec("frozen-frame(noise=6dB)"))
