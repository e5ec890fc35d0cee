"""Benchmark inputs of the `snapshot` group (benchmark process): ~2 s of moving video per processor.

`privacy-blur`: 640×360 at 30 fps, the astronaut's head (scikit-image) moving across `coffee`, so every
detection finds a face and every frame redacts one. `snapshot`: 1280×720 at 30 fps, a slow pan over
`coffee` (never black or frozen), one JPEG per second.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from skimage import data

from framepool.processors import VideoFrame

FPS = 30
FRAMES = 2 * FPS

SPECS = {
    "privacy-blur": "privacy-blur",
    "snapshot": "snapshot(interval_ms=1000)",
}


def i420(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)).ravel()


def video(pictures: list[npt.NDArray[np.uint8]]) -> list[VideoFrame]:
    height, width = pictures[0].shape[:2]
    return [
        VideoFrame(i420(picture), width, height, "I420", round(seq * 1e6 / FPS), seq, False)
        for seq, picture in enumerate(pictures)
    ]


def face_over_coffee() -> list[VideoFrame]:
    scene = np.asarray(cv2.resize(data.coffee(), (640, 360), interpolation=cv2.INTER_AREA))
    head = np.asarray(cv2.resize(data.astronaut()[20:230, 130:320], None, fx=0.8, fy=0.8))
    pictures = []
    for seq in range(FRAMES):
        picture = scene.copy()
        x = 40 + seq * 6  # 180 px/s: a person walking across the picture
        picture[80 : 80 + head.shape[0], x : x + head.shape[1]] = head
        pictures.append(picture)
    return video(pictures)


def pan_over_coffee() -> list[VideoFrame]:
    scene = np.asarray(cv2.resize(data.coffee(), (1440, 960), interpolation=cv2.INTER_CUBIC))
    return video(
        [np.ascontiguousarray(scene[seq : seq + 720, 2 * seq : 2 * seq + 1280]) for seq in range(FRAMES)]
    )


def inputs() -> dict[str, tuple[str, list[Any]]]:
    return {
        "privacy-blur": (SPECS["privacy-blur"], face_over_coffee()),
        "snapshot": (SPECS["snapshot"], pan_over_coffee()),
    }
