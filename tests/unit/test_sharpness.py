"""sharpness against OpenCV's own `cv2.Laplacian(luma, cv2.CV_64F).var()` on the same luma, its
monotonic fall with Gaussian blur, and its blur events and intervals."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from skimage import data as samples

from framepool.processors import VideoFormat, VideoFrame, frame_bytes, instantiate, parse_spec, resolve
from framepool.processors.sharpness import laplacian_variance
from tests.support.context import run

FPS = 30.0


def opencv_reference(luma: np.ndarray) -> float:
    return float(cv2.Laplacian(luma, cv2.CV_64F).var())


def i420(luma: np.ndarray, seq: int = 0) -> VideoFrame:
    """A frame of any width and height whose luma plane is `luma` (chroma neutral)."""
    height, width = luma.shape
    buffer = np.full(frame_bytes(width, height, "I420"), 128, np.uint8)
    buffer[: width * height] = luma.reshape(-1)
    return VideoFrame(buffer, width, height, "I420", round(seq * 1e6 / FPS), seq, False)


def camera() -> np.ndarray:
    return np.asarray(samples.camera(), np.uint8)


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return image if sigma == 0 else cv2.GaussianBlur(image, (0, 0), sigma)


def lumas() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    photo = camera()
    return {
        "camera 512x512": photo,
        "camera odd 321x179": np.ascontiguousarray(photo[7:186, 11:332]),
        "uniform noise": rng.integers(0, 256, (120, 160), dtype=np.uint8),
        "flat": np.full((90, 160), 77, np.uint8),
        "astronaut luma": cv2.cvtColor(np.asarray(samples.astronaut(), np.uint8), cv2.COLOR_RGB2GRAY),
        "1x1": np.full((1, 1), 200, np.uint8),
    }


@pytest.mark.parametrize("name", list(lumas()))
def test_equals_opencv_laplacian_variance(name: str) -> None:
    luma = lumas()[name]
    expected = opencv_reference(luma)
    ctx = run(instantiate(parse_spec("sharpness")), [i420(luma)])
    [line] = [payload for _topic, payload in ctx.results if "sharpness" in payload and "event" not in payload]
    assert line["sharpness"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert laplacian_variance(luma) == pytest.approx(expected, rel=1e-6, abs=1e-9)
    relative = abs(line["sharpness"] - expected) / expected if expected else 0.0
    print(f"{name}: {expected:.6f}, relative difference {relative:.2g}")


def test_strictly_decreasing_with_gaussian_blur_sigma() -> None:
    photo = camera()
    sigmas = [0, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8]
    frames = [i420(blurred(photo, sigma), seq) for seq, sigma in enumerate(sigmas)]
    ctx = run(instantiate(parse_spec("sharpness")), frames)
    values = [payload["sharpness"] for _topic, payload in ctx.results if "event" not in payload]
    assert values == pytest.approx([opencv_reference(blurred(photo, s)) for s in sigmas], rel=1e-6)
    assert all(a > b for a, b in itertools.pairwise(values)), values
    print("sigma -> variance:", {s: round(v, 1) for s, v in zip(sigmas, values, strict=True)})


def sequence(plan: list[tuple[float, int]]) -> list[VideoFrame]:
    """Frames of the camera image at each (blur sigma, count) in turn, at 30 fps."""
    photo = camera()[::2, ::2].copy()
    lumas_ = [blurred(photo, sigma) for sigma, count in plan for _ in range(count)]
    return [i420(luma, seq) for seq, luma in enumerate(lumas_)]


def time_of(frame: int) -> int:
    return round(frame * 1e6 / FPS)


def test_blur_events_need_the_minimum_duration_and_hysteresis() -> None:
    photo = camera()[::2, ::2].copy()
    sharp, soft, mid = (opencv_reference(blurred(photo, s)) for s in (0, 3, 1.2))
    threshold = mid / 1.1
    assert soft < threshold < mid < threshold * 1.2 < sharp  # mid: above the threshold, below the exit
    # Blurred frames 30-39 (333 ms: too short) and 50-79, "mid" frames 80-99 (no exit), then sharp.
    frames = sequence([(0, 30), (3, 10), (0, 10), (3, 30), (1.2, 20), (0, 30)])
    spec = f"sharpness(threshold={threshold}, hysteresis=1.2, min_duration_ms=500)"
    ctx = run(instantiate(parse_spec(spec)), frames)
    starts, ends = ctx.events("blur_start"), ctx.events("blur_end")
    assert [(e["start_us"], e["frame_time_us"]) for e in starts] == [(time_of(50), time_of(65))]
    # Blur holds through the "mid" frames (above the threshold, below threshold * hysteresis) and ends at
    # the first sharp frame, 100, confirmed 500 ms later.
    assert [(e["start_us"], e["end_us"], e["frame_time_us"]) for e in ends] == [
        (time_of(50), time_of(100), time_of(115))
    ]
    assert ends[0]["duration_ms"] == (time_of(100) - time_of(50)) / 1000
    blurred_flags = [p["blurred"] for _t, p in ctx.results if "event" not in p and "blurred" in p]
    assert blurred_flags == [65 <= i < 115 for i in range(len(frames))]


def test_a_stream_ending_blurred_closes_its_blur() -> None:
    frames = sequence([(0, 5), (4, 40)])
    ctx = run(instantiate(parse_spec("sharpness(threshold=200, min_duration_ms=100)")), frames)
    [end] = ctx.events("blur_end")
    assert (end["start_us"], end["end_us"], end["reason"]) == (time_of(5), time_of(44), "stream ended")
    # 100 ms is 3 frames at 30 fps: blur starts at frame 5, confirmed at frame 8, held to the end (44).
    assert ctx.events("summary") == [{"event": "summary", "frames": 45, "blurred_frames": 45 - 8}]


def test_intervals_report_mean_min_max_of_their_frames() -> None:
    frames = sequence([(0, 20), (2, 20), (0.7, 7)])
    reference = [opencv_reference(frame.y) for frame in frames]
    ctx = run(instantiate(parse_spec("sharpness(emit_ms=500)")), frames)
    intervals = [p for _t, p in ctx.results if "mean" in p]
    assert [p["frames"] for p in intervals] == [15, 15, 15, 2]  # 500 ms at 30 fps, the last partial
    for index, line in enumerate(intervals):
        chunk = np.asarray(reference[index * 15 : index * 15 + 15])
        assert (line["start_us"], line["end_us"]) == (
            time_of(index * 15),
            time_of(index * 15 + len(chunk) - 1),
        )
        assert line["mean"] == pytest.approx(chunk.mean(), rel=1e-6)
        assert (line["min"], line["max"]) == pytest.approx((chunk.min(), chunk.max()), rel=1e-6)


def test_format() -> None:
    assert resolve(parse_spec("sharpness")).fmt == VideoFormat()
    assert resolve(parse_spec("sharpness(max_width=640)")).fmt == VideoFormat(max_width=640)
