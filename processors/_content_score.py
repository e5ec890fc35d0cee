"""PySceneDetect's ContentDetector score and minimum-scene-length filter, re-expressed for frames that
arrive one at a time (worker process; used by framepool.processors.scene_cut).

The definitions are those of scenedetect 0.7 (`detectors/content_detector.py`, `detector.py`), kept
bit for bit where it is observable:

- the frame goes to HSV with OpenCV's 8-bit conversion (H in 0..179, S and V in 0..255). PySceneDetect
  converts BGR with COLOR_BGR2HSV; we receive RGB and convert with COLOR_RGB2HSV, which is the same
  arithmetic on the same pixels with the channel order read the other way round;
- each component is the mean absolute difference of one plane between consecutive frames: the integer
  sum of absolute differences divided by the pixel count. PySceneDetect sums with numpy; we take the
  three sums in one pass (cv2.absdiff over the interleaved HSV image, cv2.sumElems per channel), exact
  integers in a double either way, so the quotient is the same double;
- the edge component compares Canny edges of the V plane, thresholds from its median (sigma 1/3),
  dilated by a square kernel whose size follows the resolution, as `_detect_edges` does;
- the score is the weighted sum of the components over the sum of the weights' magnitudes, summed in
  the same order; the first frame scores 0.0;
- the optional downscale is SceneManager's: a factor (automatic: the larger side brought to 256 px), an
  OpenCV bilinear resize to round(size / factor).

`MinSceneLength` is PySceneDetect's FlashFilter for a length in frames, in its two modes: merge (cuts
closer than the minimum are merged into one, reported late at the last frame above the threshold) and
suppress (a cut closer than the minimum to the previous one is dropped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Weights = tuple[float, float, float, float]  # hue, saturation, luma (V), edges
COMPONENTS = ("delta_hue", "delta_sat", "delta_lum", "delta_edges")
LUMA_ONLY: Weights = (0.0, 0.0, 1.0, 0.0)
AUTO_DOWNSCALE_WIDTH = 256  # scenedetect.scene_manager.DEFAULT_MIN_WIDTH
EDGE_SIGMA = 1.0 / 3.0


def downscale_factor(width: int, height: int, downscale: int) -> float:
    """SceneManager's factor: `downscale` itself, or for 0 (auto) the larger side over 256 px."""
    if downscale:
        return float(downscale)
    largest = max(width, height)
    return 1.0 if largest < AUTO_DOWNSCALE_WIDTH else largest / float(AUTO_DOWNSCALE_WIDTH)


def analysis_image(image: Image, downscale: int) -> Image:
    """The image the score is computed on: resized as SceneManager resizes, or as is."""
    height, width = image.shape[:2]
    factor = downscale_factor(width, height, downscale)
    if factor <= 1.0:
        return image
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), np.uint8)


def estimated_kernel_size(width: int, height: int) -> int:
    """The edge dilation kernel PySceneDetect picks for a resolution (odd, about 4 + diagonal/192)."""
    size = 4 + round(math.sqrt(width * height) / 192)
    return size + 1 if size % 2 == 0 else size


def detect_edges(lum: Image, kernel: Image) -> Image:
    """Canny edges of the V plane with median-derived thresholds, dilated by `kernel` (255: edge)."""
    median = float(np.median(lum))
    low = int(max(0, (1.0 - EDGE_SIGMA) * median))
    high = int(min(255, (1.0 + EDGE_SIGMA) * median))
    return np.asarray(cv2.dilate(cv2.Canny(lum, low, high), kernel), np.uint8)


@dataclass(slots=True)
class FramePlanes:
    """What the next frame is compared with: the HSV image and, when edges are weighted, its edge map."""

    hsv: Image
    edges: Image | None


def frame_planes(image: Image, kernel: Image | None) -> FramePlanes:
    """HSV of an RGB image, and its edge map when a dilation kernel is given (edges weighted)."""
    hsv = np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2HSV), np.uint8)
    edges = None if kernel is None else detect_edges(np.asarray(cv2.extractChannel(hsv, 2)), kernel)
    return FramePlanes(hsv, edges)


def components(current: FramePlanes, previous: FramePlanes) -> Weights:
    """Mean absolute difference per HSV plane (and of the edge maps, 0.0 without them)."""
    pixels = float(current.hsv.shape[0] * current.hsv.shape[1])
    hue, sat, lum, _ = cv2.sumElems(cv2.absdiff(current.hsv, previous.hsv))
    edges = 0.0
    if current.edges is not None and previous.edges is not None:
        edges = cv2.norm(current.edges, previous.edges, cv2.NORM_L1) / pixels
    return (hue / pixels, sat / pixels, lum / pixels, edges)


def weighted_score(values: Weights, weights: Weights) -> float:
    """ContentDetector's `content_val`: the weighted components over the sum of the weights' magnitudes,
    added in the same order so the result is the same double."""
    return sum(value * weight for value, weight in zip(values, weights, strict=True)) / sum(
        abs(weight) for weight in weights
    )


class MinSceneLength:
    """PySceneDetect's FlashFilter with the minimum scene length in frames: `push` each frame's number and
    whether its score reached the threshold; returns the frame of a cut, if this frame decides one."""

    def __init__(self, length: int, merge: bool) -> None:
        self.length = length
        self.merge = merge
        self.last_above: int | None = None  # the first frame seen, then the last frame above threshold
        self._merge_enabled = False  # merging starts only after a first cut
        self._merge_start: int | None = None  # the frame that started the current merge

    def push(self, frame: int, above: bool) -> int | None:
        if self.length <= 0:
            return frame if above else None
        if self.last_above is None:
            self.last_above = frame
        length_met = frame - self.last_above >= self.length
        if not self.merge:
            if not (above and length_met):
                return None
            self.last_above = frame
            return frame
        if above:
            self.last_above = frame
        if self._merge_start is not None:
            if length_met and not above and self.last_above - self._merge_start >= self.length:
                self._merge_start = None
                return self.last_above
            return None
        if not above:
            return None
        if length_met:
            self._merge_enabled = True
            return frame
        if self._merge_enabled:
            self._merge_start = frame
        return None
