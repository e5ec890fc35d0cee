"""Face detection for `privacy-blur` (worker process): OpenCV's Haar cascades, loaded once per worker.

The cascades are the XML files opencv-python-headless 4.x ships in `cv2.data.haarcascades` (OpenCV 5
removed both the files and `cv2.CascadeClassifier`, hence the `<5` pin). Loading parses ~1.8 MB of XML,
so it happens once per worker (`load_cascades`, held by a WorkerResource) and every stream there shares
the classifiers: a stream's detector only adds its own parameters.

A detector is any callable from a luma plane (full resolution) to face boxes in the same coordinates:
the processor takes one as a seam (`PrivacyBlur(params, detector=...)`), so tests can substitute a slow
or scripted detector. `CascadeDetector` detects on a copy reduced to `detect_width` (INTER_AREA: an
average, so the small image is not aliased), then scales the boxes back. The copy is not
histogram-equalised, as OpenCV's samples do: equalising the whole frame lets the background set the
contrast of the face, and on faces pasted into other pictures (tests/unit/test_privacy_blur.py) it lost
a third of the faces below 80 px.

Profile faces: `haarcascade_profileface.xml` knows faces turned one way only, so it runs on the image and
on its mirror image. Optional: it triples the detection cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt
from cv2 import data as opencv_data

U8 = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1 and y1 exclusive
FaceDetector = Callable[[npt.NDArray[np.uint8]], list[Box]]

FRONTAL = "haarcascade_frontalface_default.xml"
PROFILE = "haarcascade_profileface.xml"
MIN_FACE_PX = 24  # at the detection resolution: the frontal cascade's own window, nothing smaller exists


@dataclass(frozen=True, slots=True)
class Cascades:
    """The classifiers of one worker, shared by its streams."""

    frontal: cv2.CascadeClassifier
    profile: cv2.CascadeClassifier


def cascade(filename: str) -> cv2.CascadeClassifier:
    """One of the Haar cascades shipped with OpenCV; a missing or unreadable file raises."""
    path = Path(opencv_data.haarcascades) / filename
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise RuntimeError(f"cannot load the Haar cascade {path} (opencv-python-headless 4.x ships it)")
    return classifier


def load_cascades() -> Cascades:
    """The worker's classifiers."""
    return Cascades(frontal=cascade(FRONTAL), profile=cascade(PROFILE))


class CascadeDetector:
    """A FaceDetector over the worker's cascades, with one stream's parameters."""

    def __init__(
        self, cascades: Cascades, *, detect_width: int, scale_factor: float, min_neighbors: int, profile: bool
    ) -> None:
        self._cascades = cascades
        self._scale_factor = scale_factor
        self._detect_width = detect_width
        self._min_neighbors = min_neighbors
        self._profile = profile

    def __call__(self, luma: npt.NDArray[np.uint8]) -> list[Box]:
        height, width = luma.shape
        scale = self._detect_width / width if 0 < self._detect_width < width else 1.0
        small = luma
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cast(U8, cv2.resize(luma, size, interpolation=cv2.INTER_AREA))
        found = self._run(self._cascades.frontal, small)
        if self._profile:
            found += self._run(self._cascades.profile, small)
            mirrored_width = small.shape[1]
            found += [
                (mirrored_width - x1, y0, mirrored_width - x0, y1)
                for x0, y0, x1, y1 in self._run(self._cascades.profile, cast(U8, cv2.flip(small, 1)))
            ]
        return [scaled(box, 1.0 / scale, width, height) for box in found]

    def _run(self, classifier: cv2.CascadeClassifier, image: npt.NDArray[np.uint8]) -> list[Box]:
        rects = classifier.detectMultiScale(
            image,
            scaleFactor=self._scale_factor,
            minNeighbors=self._min_neighbors,
            minSize=(MIN_FACE_PX, MIN_FACE_PX),
        )
        return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in rects]


def scaled(box: Box, factor: float, width: int, height: int) -> Box:
    """`box` multiplied by `factor`, rounded outwards and clipped to the frame."""
    x0, y0, x1, y1 = box
    return (
        max(0, int(np.floor(x0 * factor))),
        max(0, int(np.floor(y0 * factor))),
        min(width, int(np.ceil(x1 * factor))),
        min(height, int(np.ceil(y1 * factor))),
    )


def dilated(box: Box, ratio: float, width: int, height: int) -> Box:
    """The region anonymised for a face box: each side moved out by `ratio` of the box's size, then out to
    even coordinates (so the region covers whole chroma samples of I420), clipped to the frame."""
    x0, y0, x1, y1 = box
    grow_x, grow_y = (x1 - x0) * ratio, (y1 - y0) * ratio
    return (
        max(0, int(np.floor(x0 - grow_x)) & ~1),
        max(0, int(np.floor(y0 - grow_y)) & ~1),
        min(width, (int(np.ceil(x1 + grow_x)) + 1) & ~1),
        min(height, (int(np.ceil(y1 + grow_y)) + 1) & ~1),
    )


def overlaps(a: Box, b: Box) -> bool:
    """Whether two boxes share any pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
