"""Synthetic video for the video analysers' tests and benchmark inputs (test process): scenes of varied
colour and texture with motion inside them, hard cuts, flashes, pans, sensor noise and fades, as RGB
images, and the VideoFrames (RGB24 or I420) that carry them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np
import numpy.typing as npt

from framepool.processors import VideoFrame

Image = npt.NDArray[np.uint8]


def scene_image(seed: int, height: int, width: int) -> Image:
    """A still of one scene: smooth colour fields (a few random colours, interpolated) with fine texture,
    so hue, saturation, value and edges all differ from another seed's."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    fields = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    texture = cv2.GaussianBlur(rng.normal(0, 24, (height, width)).astype(np.float32), (0, 0), 1.2)
    return np.clip(fields + texture[..., None].astype(np.int16), 0, 255).astype(np.uint8)


def moving_scene(seed: int, frames: int, height: int, width: int, step: int = 2) -> list[Image]:
    """A camera drifting over one scene: a window sliding `step` px per frame over a larger still."""
    still = scene_image(seed, height + step * frames, width + step * frames)
    return [
        np.ascontiguousarray(still[i * step : i * step + height, i * step : i * step + width])
        for i in range(frames)
    ]


def cut_clip(lengths: Iterable[int], height: int, width: int, seed: int = 0) -> list[Image]:
    """Scenes of the given lengths in frames, one after another (a hard cut at each boundary)."""
    clip: list[Image] = []
    for index, length in enumerate(lengths):
        clip += moving_scene(seed + index, length, height, width)
    return clip


def pan(frames: int, height: int, width: int, step: int = 4, seed: int = 100) -> list[Image]:
    """A large textured image panned horizontally `step` px per frame."""
    still = scene_image(seed, height, width + step * frames)
    return [np.ascontiguousarray(still[:, i * step : i * step + width]) for i in range(frames)]


def sensor_noise(frames: int, height: int, width: int, sigma: float = 3.0, seed: int = 200) -> list[Image]:
    """A static scene with independent Gaussian noise of `sigma` levels per pixel and frame (a camera's
    read noise in good light is 1 to 4 levels of 255)."""
    still = scene_image(seed, height, width).astype(np.float32)
    rng = np.random.default_rng(seed)
    return [
        np.clip(np.rint(still + rng.normal(0, sigma, still.shape)), 0, 255).astype(np.uint8)
        for _ in range(frames)
    ]


def fade_out(frames: int, height: int, width: int, seed: int = 300) -> list[Image]:
    """A static scene fading linearly to black over `frames` frames."""
    still = scene_image(seed, height, width).astype(np.float32)
    return [np.rint(still * (1 - i / (frames - 1))).astype(np.uint8) for i in range(frames)]


def rgb_frames(images: Iterable[Image], fps: float = 30.0, start_us: int = 0) -> Iterator[VideoFrame]:
    """RGB images as RGB24 VideoFrames at `fps`."""
    for seq, image in enumerate(images):
        height, width = image.shape[:2]
        time_us = start_us + round(seq * 1e6 / fps)
        yield VideoFrame(np.ascontiguousarray(image).reshape(-1), width, height, "RGB24", time_us, seq, False)


def to_i420(image: Image) -> Image:
    """An RGB image (even width and height) as one flat I420 buffer (OpenCV's BT.601 conversion)."""
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), np.uint8).reshape(-1)


def luma_i420(luma: Image) -> Image:
    """A luma plane (even width and height) with neutral chroma, as one flat I420 buffer."""
    height, width = luma.shape
    data = np.full(width * height * 3 // 2, 128, np.uint8)
    data[: width * height] = luma.reshape(-1)
    return data
