"""Downscaling to a processor's maximum resolution: sizes, block averages, chroma planes."""

import numpy as np
import pytest

from framepool.processors import VideoFormat, frame_bytes
from framepool.worker.scale import downscale, scale_factor


@pytest.mark.parametrize(
    ("size", "maximum", "factor"),
    [
        ((1280, 720), (640, 360), 2),
        ((1280, 720), (500, 500), 3),
        ((1280, 720), (0, 0), 1),
        ((320, 240), (640, 360), 1),
        ((1920, 1080), (0, 540), 2),
    ],
)
def test_scale_factor_fits_within_the_maximum(
    size: tuple[int, int], maximum: tuple[int, int], factor: int
) -> None:
    fmt = VideoFormat(max_width=maximum[0], max_height=maximum[1])
    assert scale_factor(*size, fmt) == factor
    assert (not maximum[0] or size[0] // factor <= maximum[0]) and (
        not maximum[1] or size[1] // factor <= maximum[1]
    )


def i420(width: int, height: int, y: np.ndarray, u: int, v: int) -> np.ndarray:
    cw, ch = (width + 1) // 2, (height + 1) // 2
    return np.concatenate([y.ravel(), np.full(cw * ch, u, np.uint8), np.full(cw * ch, v, np.uint8)]).astype(
        np.uint8
    )


def test_i420_luma_is_block_averaged_and_chroma_kept() -> None:
    width, height = 8, 4
    luma = np.arange(width * height, dtype=np.uint8).reshape(height, width)
    out, w, h = downscale(i420(width, height, luma, 90, 200), width, height, "I420", 2)
    assert (w, h) == (4, 2)
    assert out.size == frame_bytes(4, 2, "I420")
    expected = luma.reshape(2, 2, 4, 2).mean(axis=(1, 3))
    np.testing.assert_array_equal(out[:8].reshape(2, 4), np.floor(expected + 0.5).astype(np.uint8))
    assert set(out[8:10]) == {90} and set(out[10:12]) == {200}


def test_720p_to_a_third() -> None:
    width, height = 1280, 720
    frame = i420(width, height, np.full((height, width), 50, np.uint8), 128, 128)
    out, w, h = downscale(frame, width, height, "I420", 3)
    assert (w, h) == (426, 240)
    assert out.size == frame_bytes(426, 240, "I420")
    assert set(np.unique(out[: w * h])) == {50} and set(np.unique(out[w * h :])) == {128}


def test_rgb_block_average() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2, :2] = (200, 100, 0)
    image[0, 0] = (0, 0, 0)
    out, w, h = downscale(image.ravel(), 4, 4, "RGB24", 2)
    assert (w, h) == (2, 2)
    np.testing.assert_array_equal(out.reshape(2, 2, 3)[0, 0], (150, 75, 0))
    np.testing.assert_array_equal(out.reshape(2, 2, 3)[1, 1], (0, 0, 0))


@pytest.mark.parametrize(
    ("width", "height", "factor"), [(1280, 720, 2), (641, 361, 3), (1000, 3, 10), (7, 5, 2)]
)
@pytest.mark.parametrize("pixel_format", ["I420", "RGB24", "RGBA"])
def test_every_block_is_its_mean_rounded_half_up(
    width: int, height: int, factor: int, pixel_format: str
) -> None:
    """Square and narrowed blocks alike: each output value is the mean of its block, ties rounded up."""
    rng = np.random.default_rng(width * height * factor)
    size = frame_bytes(width, height, pixel_format)  # type: ignore[arg-type]
    data = rng.integers(0, 256, size, dtype=np.uint8)
    out, w, h = downscale(data, width, height, pixel_format, factor)  # type: ignore[arg-type]
    if pixel_format == "I420":  # the luma plane; the chroma planes take the same path at half the size
        planes = [(data[: width * height], out[: w * h], width, height, 1)]
    else:
        planes = [(data, out, width, height, 3 if pixel_format == "RGB24" else 4)]
    for source, scaled, pw, ph, depth in planes:
        image = source.reshape(ph, pw, depth).astype(np.float64)
        fy, fx = min(factor, ph // h), min(factor, pw // w)
        blocks = image[: h * fy, : w * fx].reshape(h, fy, w, fx, depth).mean(axis=(1, 3))
        np.testing.assert_array_equal(scaled.reshape(h, w, depth), np.floor(blocks + 0.5).astype(np.uint8))


def test_output_buffer_is_reused_when_the_size_matches() -> None:
    frame = i420(64, 32, np.full((32, 64), 10, np.uint8), 20, 30)
    first, _, _ = downscale(frame, 64, 32, "I420", 2)
    again, _, _ = downscale(frame, 64, 32, "I420", 2, out=first)
    assert again is first
    other, w, h = downscale(frame, 64, 32, "I420", 4, out=first)  # another geometry: a new buffer
    assert other is not first and other.size == frame_bytes(w, h, "I420")


def test_stream_format_of_processors_with_different_maxima_is_the_least_restrictive() -> None:
    from framepool.pool import input_format_of
    from framepool.processors.registry import parse_spec

    def fmt(*specs: str) -> VideoFormat:
        result = input_format_of([parse_spec(s) for s in specs])
        assert isinstance(result, VideoFormat)
        return result

    assert fmt(
        "tests.support.procs:SizeProbe(max_width=160)",
        "tests.support.procs:SizeProbe(max_width=320, max_height=90)",
    ) == VideoFormat(max_width=320, max_height=0)
    assert (
        fmt("tests.support.procs:SizeProbe(max_width=160)", "tests.support.procs:SizeProbe") == VideoFormat()
    )
