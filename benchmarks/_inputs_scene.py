"""Benchmark inputs of scene-cut, sharpness and brightness (benchmark process; read by
benchmarks/processors.py): 2 s of moving content (a camera drifting over textured scenes, with hard cuts)
at 30 fps, at 640x360 and 1280x720, in each processor's native format at its default parameters (RGB24
for scene-cut, I420 for the other two; none of them asks the worker to scale by default)."""

from __future__ import annotations

from typing import Any

from framepool.processors import VideoFrame
from tests.support import scenes

FPS = 30.0
SIZES = {"": (360, 640), "@1280x720": (720, 1280)}
SPECS = {"scene-cut": "scene-cut", "sharpness": "sharpness", "brightness": "brightness(ydif=true)"}


def _frames(name: str, height: int, width: int) -> list[VideoFrame]:
    images = scenes.cut_clip([20, 20, 20], height, width)  # 60 frames: 2 s, cuts at 20 and 40
    if name == "scene-cut":
        return list(scenes.rgb_frames(images, FPS))
    return [
        VideoFrame(scenes.to_i420(image), width, height, "I420", round(seq * 1e6 / FPS), seq, False)
        for seq, image in enumerate(images)
    ]


def inputs() -> dict[str, tuple[str, list[Any]]]:
    return {
        f"{name}{suffix}": (spec, _frames(name, height, width))
        for suffix, (height, width) in SIZES.items()
        for name, spec in SPECS.items()
    }
