"""`snapshot` against independent references: every JPEG decoded by Pillow (not OpenCV, which encodes it),
compared with the source frame rendered by FFmpeg's swscale (PyAV); cadence, the sharpest choice (the
variance of the Laplacian as OpenCV defines it), black and frozen frames skipped."""

from __future__ import annotations

import io
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from framepool.errors import ProcessorError
from framepool.processors import instantiate, parse_spec
from framepool.processors.snapshot import Snapshot, SnapshotParams
from tests.support.context import RecordingContext, i420_frames, run
from tests.support.pictures import U8, i420_to_rgb, luma_of, psnr, rgb_to_i420

MOVING = np.random.default_rng(12)


def decoded(jpeg: bytes) -> U8:
    with Image.open(io.BytesIO(jpeg)) as picture:
        assert picture.format == "JPEG"
        return np.asarray(picture.convert("RGB"))


def noise_frames(count: int, width: int = 64, height: int = 48) -> list[U8]:
    """Frames that are never black and always change (mid-grey noise)."""
    size = width * height * 3 // 2
    return [MOVING.integers(60, 200, size, dtype=np.uint8) for _ in range(count)]


def snap(spec: str, frames: list[U8], width: int, height: int, fps: float) -> RecordingContext:
    return run(instantiate(parse_spec(spec)), i420_frames(frames, width, height, fps))


def snapshot_times(ctx: RecordingContext) -> list[int]:
    return [int(event["time_us"]) for event in ctx.events("snapshot")]


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_a_jpeg_decodes_to_the_source_frame(name: str) -> None:
    """At quality 90, the JPEG Pillow decodes is within 35 dB PSNR of the frame as swscale renders it (the
    loss is the JPEG's; measured 36.4 to 38.9 dB), and within 34 dB of the original RGB picture (plus the
    loss of 4:2:0 I420; measured 35.2 to 38.8 dB)."""
    rgb = getattr(data, name)()
    height, width = rgb.shape[:2]
    source = rgb_to_i420(rgb)
    ctx = snap("snapshot(quality=90, max_width=0)", [source], width, height, 30)
    [(topic, jpeg, blob_name, mime, attributes)] = ctx.blobs
    picture = decoded(jpeg)
    assert picture.shape == rgb.shape
    assert psnr(picture, i420_to_rgb(source, width, height)) >= 35.0
    assert psnr(picture, rgb) >= 34.0
    [event] = ctx.events("snapshot")
    assert (topic, mime, blob_name) == ("snapshot", "image/jpeg", event["name"])
    assert attributes["width"] == str(width) and attributes["height"] == str(height)
    assert attributes["time_us"] == "0" and event["bytes"] == len(jpeg)


@pytest.mark.parametrize(("width", "height"), [(451, 300), (450, 299), (451, 299)])
def test_odd_sizes_keep_their_colours_and_size(width: int, height: int) -> None:
    rgb = np.ascontiguousarray(data.chelsea()[:height, :width])
    source = rgb_to_i420(rgb)
    ctx = snap("snapshot(quality=95)", [source], width, height, 30)
    picture = decoded(ctx.blobs[0][1])
    assert picture.shape == (height, width, 3)
    reference = i420_to_rgb(source, width, height)
    assert psnr(picture, reference) >= 38.0  # measured 40.1 to 42.5 dB
    # The last column and row are where padding to even sizes would show.
    assert psnr(picture[:, -1], reference[:, -1]) >= 32.0
    assert psnr(picture[-1], reference[-1]) >= 32.0


def test_wider_frames_are_scaled_down_before_encoding() -> None:
    rgb = cv2.resize(data.coffee(), (1280, 720), interpolation=cv2.INTER_CUBIC)
    source = rgb_to_i420(rgb)
    ctx = snap("snapshot(quality=90, max_width=640)", [source], 1280, 720, 30)
    picture = decoded(ctx.blobs[0][1])
    assert picture.shape == (360, 640, 3)
    reference = np.asarray(
        Image.fromarray(i420_to_rgb(source, 1280, 720)).resize((640, 360), Image.Resampling.BOX)
    )
    assert psnr(picture, reference) >= 33.0
    [event] = ctx.events("snapshot")
    assert (event["width"], event["height"]) == (640, 360)


@pytest.mark.parametrize(("fps", "interval_ms"), [(30.0, 1000), (25.0, 400), (29.97, 700), (12.0, 250)])
@pytest.mark.parametrize("select", ["latest", "sharpest"])
def test_one_snapshot_per_interval_within_a_frame(fps: float, interval_ms: int, select: str) -> None:
    count = round(4.0 * fps)
    ctx = snap(f"snapshot(interval_ms={interval_ms}, select={select})", noise_frames(count), 64, 48, fps)
    times = snapshot_times(ctx)
    intervals = len({round(seq * 1e6 / fps) // (interval_ms * 1000) for seq in range(count)})
    assert len(times) == len(ctx.blobs) == intervals
    frame_us = 1e6 / fps
    for index, time_us in enumerate(times):
        start = index * interval_ms * 1000
        if select == "latest":  # the frame current at the interval's start
            assert start <= time_us < start + frame_us + 1
        else:  # one frame of the interval
            assert start <= time_us < start + interval_ms * 1000
    [summary] = ctx.events("summary")
    assert summary["snapshots"] == intervals


def blurred(rgb: U8, sigma: float) -> U8:
    return rgb if sigma == 0 else np.asarray(cv2.GaussianBlur(rgb, (0, 0), sigma))


def test_sharpest_picks_the_sharpest_frame_of_each_interval() -> None:
    """Ten frames per interval, one of them unblurred, the others under Gaussian blurs of σ 0.6 to 4."""
    rgb = data.astronaut()[::2, ::2]
    height, width = rgb.shape[:2]
    sigmas = [
        [2.0, 1.0, 0.6, 3.0, 0, 1.5, 4.0, 0.8, 2.5, 1.2],
        [0.7, 0, 3.5, 1.0, 2.0, 0.9, 1.4, 4.0, 0.6, 3.0],
    ]
    frames = [rgb_to_i420(blurred(rgb, sigma)) for series in sigmas for sigma in series]
    ctx = snap("snapshot(interval_ms=1000, select=sharpest, quality=95)", frames, width, height, 10)
    [first, second] = ctx.events("snapshot")
    assert (first["time_us"], second["time_us"]) == (400_000, 1_100_000)
    for event, index in ((first, 4), (second, 11)):
        expected = cv2.Laplacian(luma_of(frames[index], width, height), cv2.CV_64F).var()
        assert event["sharpness"] == pytest.approx(expected, rel=1e-6)
    for (_topic, jpeg, *_rest), index in zip(ctx.blobs, (4, 11), strict=True):
        picture = decoded(jpeg)
        scores = [
            psnr(picture, i420_to_rgb(frame, width, height)) for frame in frames[index - index % 10 :][:10]
        ]
        assert int(np.argmax(scores)) == index % 10


def frame_of(luma: int, width: int = 64, height: int = 48, dark_fraction: float = 1.0) -> U8:
    """A flat frame of `luma`, except that `1 - dark_fraction` of the luma samples are bright (200)."""
    frame = np.full(width * height * 3 // 2, 128, np.uint8)
    plane = frame[: width * height]
    plane[:] = luma
    bright = round((1.0 - dark_fraction) * width * height)
    plane[MOVING.permutation(width * height)[:bright]] = 200
    return frame


def test_black_frames_delay_the_snapshot_to_the_picture_s_return() -> None:
    """10 fps, 1 s intervals: black from 1.0 s to 3.5 s; no snapshot in intervals 1 and 2, one at the
    picture's return (3.5 s), then on time (4.0 s)."""
    frames = noise_frames(50)
    frames[10:35] = [frame_of(16, dark_fraction=0.995) for _ in range(25)]
    ctx = snap("snapshot(interval_ms=1000)", frames, 64, 48, 10)
    assert snapshot_times(ctx) == [0, 3_500_000, 4_000_000]
    assert ctx.events("summary")[0]["skipped_black"] == 25


@pytest.mark.parametrize(("dark_fraction", "black"), [(0.975, False), (0.985, True)])
def test_a_frame_is_black_from_98_percent_dark_samples(dark_fraction: float, black: bool) -> None:
    frames = [frame_of(30, dark_fraction=dark_fraction), *noise_frames(1)]
    ctx = snap("snapshot(interval_ms=1000)", frames, 64, 48, 10)
    assert snapshot_times(ctx) == ([100_000] if black else [0])


@pytest.mark.parametrize(("luma", "black"), [(37, True), (38, False)])
def test_black_luma_threshold_is_inclusive(luma: int, black: bool) -> None:
    ctx = snap("snapshot(interval_ms=1000)", [frame_of(luma), *noise_frames(1)], 64, 48, 10)
    assert snapshot_times(ctx) == ([100_000] if black else [0])


def ramp_frames(count: int, width: int = 64, height: int = 48) -> list[U8]:
    """Smooth, moving frames: a horizontal luma ramp shifted by one level per frame."""
    frames = []
    for index in range(count):
        frame = np.full(width * height * 3 // 2, 128, np.uint8)
        frame[: width * height].reshape(height, width)[:] = 60 + np.arange(width) + index
        frames.append(frame)
    return frames


@pytest.mark.parametrize(("skip_black", "chosen_us"), [(True, 0), (False, 400_000)])
def test_a_sharp_black_frame_is_never_the_sharpest(skip_black: bool, chosen_us: int) -> None:
    """A black frame with 1 % bright specks has a far higher Laplacian variance than a smooth picture."""
    frames = ramp_frames(10)
    frames[4] = frame_of(0, dark_fraction=0.99)
    spec = f"snapshot(interval_ms=1000, select=sharpest, skip_black={str(skip_black).lower()})"
    assert snapshot_times(snap(spec, frames, 64, 48, 10)) == [chosen_us]


def test_frozen_frames_are_skipped_until_the_picture_moves() -> None:
    """Moving until 0.4 s, then the same frame until 5.0 s: frozen from 2.4 s (2 s without change), so
    snapshots at 0, 1 and 2 s, none at 3 and 4 s, and at 5 s when it moves again."""
    frames = noise_frames(60)
    frames[5:50] = [frames[4]] * 45
    ctx = snap("snapshot(interval_ms=1000)", frames, 64, 48, 10)
    assert snapshot_times(ctx) == [0, 1_000_000, 2_000_000, 5_000_000]
    assert ctx.events("summary")[0]["skipped_frozen"] == 20  # while a snapshot was due: 3.0 s to 4.9 s


@pytest.mark.parametrize(
    ("every", "noise", "frozen"),
    [(2, 0.001, False), (2, 0.0014, True), (3, 0.001, True), (3, 0.0008, False)],
)
def test_changes_near_the_noise_threshold(every: int, noise: float, frozen: bool) -> None:
    """Every `every`-th luma sample one level up in every other frame. freezedetect's difference counts all
    planes (3072 luma + 1536 chroma samples here) over 256: 1536/4608/256 = 0.00130 for every second
    sample, 1024/4608/256 = 0.00087 for every third."""
    base = noise_frames(1)[0]
    frames = []
    for index in range(40):
        frame = base.copy()
        frame[: 64 * 48][::every] += index % 2
        frames.append(frame)
    ctx = snap(f"snapshot(interval_ms=1000, frozen_noise={noise})", frames, 64, 48, 10)
    assert snapshot_times(ctx) == ([0, 1_000_000] if frozen else [0, 1_000_000, 2_000_000, 3_000_000])


def test_parameters_are_validated() -> None:
    params: Any = SnapshotParams(interval_ms=500, select="sharpest")
    assert Snapshot(params).params.interval_ms == 500
    with pytest.raises(ProcessorError, match="quality"):
        instantiate(parse_spec("snapshot(quality=0)"))
