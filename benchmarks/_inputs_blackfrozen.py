"""Benchmark inputs of black-frame and frozen-frame (benchmark process): 2 s of a panning, textured camera
picture at 30 fps, at 640×360 and 1280×720, in I420 (their native input format).

Panning keeps every frame different from the last, which is the costly path of both: black-frame counts the
whole luma plane, frozen-frame compares every sample with its reference and copies each changed frame as the
new reference. A mid-grey scene with texture is neither black nor still, as most camera video is. Inputs are
deterministic (a seeded texture, a fixed pan).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from framepool.processors import VideoFrame

FPS = 30
SECONDS = 2
SIZES = [(640, 360), (1280, 720)]
SPECS = ["black-frame", "frozen-frame"]


def panning_frames(width: int, height: int) -> list[VideoFrame]:
    """FPS × SECONDS frames of a textured scene panning 4 pixels a frame (chroma 2), with sensor noise."""
    rng = np.random.default_rng(width)
    frames = FPS * SECONDS
    scene = rng.integers(40, 200, (height, width + 4 * frames), dtype=np.uint8)
    chroma = rng.integers(100, 156, (2, height // 2, width // 2 + 2 * frames), dtype=np.uint8)
    noise = rng.integers(-2, 3, (height, width), dtype=np.int16)
    out: list[VideoFrame] = []
    for index in range(frames):
        luma = np.clip(scene[:, 4 * index : 4 * index + width] + np.roll(noise, index, axis=1), 0, 255)
        planes: list[npt.NDArray[np.uint8]] = [luma.astype(np.uint8)]
        planes += [plane[:, 2 * index : 2 * index + width // 2] for plane in chroma]
        data = np.concatenate([plane.ravel() for plane in planes])
        out.append(VideoFrame(data, width, height, "I420", index * 1_000_000 // FPS, index, False))
    return out


def inputs() -> dict[str, tuple[str, list[Any]]]:
    """`name@WxH` → (spec with the default parameters, frames), for both processors at both sizes."""
    result: dict[str, tuple[str, list[Any]]] = {}
    for width, height in SIZES:
        frames = panning_frames(width, height)
        for spec in SPECS:
            result[f"{spec}@{width}x{height}"] = (spec, frames)
    return result
