"""Pixelation and Gaussian blur of regions of an I420 frame, in place (worker process; `privacy-blur`).

Only the pixels inside a region are written, in all three planes: a region has even coordinates (see
`framepool.processors._faces.dilated`), so its chroma samples cover exactly its luma pixels and the rest of
the frame stays bit-identical.

Strength scales with the region, so a face close to the camera is as unrecognisable as a distant one:
pixelation keeps `cells` cells across the region's longer side; the blur's σ is `sigma_ratio` times that
side. A large σ is applied to a copy reduced so that σ is ~2 px there, then scaled back (INTER_LINEAR):
the same look for a fraction of the cost of a kernel ~6σ wide at full resolution.
"""

from __future__ import annotations

from typing import Literal, cast

import cv2
import numpy as np
import numpy.typing as npt

from framepool.processors._faces import U8, Box

Mode = Literal["pixelate", "blur"]
BLUR_WORKING_SIGMA = 2.0  # σ in the reduced copy


def i420_planes(
    data: npt.NDArray[np.uint8], width: int, height: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Writable views of the Y, U and V planes of a whole I420 buffer."""
    chroma_width, chroma_height = (width + 1) // 2, (height + 1) // 2
    luma_end = width * height
    chroma_size = chroma_width * chroma_height
    return (
        data[:luma_end].reshape(height, width),
        data[luma_end : luma_end + chroma_size].reshape(chroma_height, chroma_width),
        data[luma_end + chroma_size : luma_end + 2 * chroma_size].reshape(chroma_height, chroma_width),
    )


def redact(
    data: npt.NDArray[np.uint8], width: int, height: int, region: Box, mode: Mode, strength: float
) -> None:
    """Pixelate (`strength`: cells across the longer side) or blur (`strength`: σ / longer side) `region`
    of the I420 buffer `data`, in place."""
    x0, y0, x1, y1 = region
    if x1 <= x0 or y1 <= y0:
        return
    luma, u, v = i420_planes(data, width, height)
    longer = max(x1 - x0, y1 - y0)
    luma_window = (slice(y0, y1), slice(x0, x1))
    chroma_window = (slice(y0 // 2, (y1 + 1) // 2), slice(x0 // 2, (x1 + 1) // 2))
    for plane, window, side in (
        (luma, luma_window, longer),
        (u, chroma_window, longer / 2),
        (v, chroma_window, longer / 2),
    ):
        roi = plane[window]
        if mode == "pixelate":
            plane[window] = pixelated(roi, max(1, round(strength)))
        else:
            plane[window] = blurred(roi, strength * side)


def pixelated(roi: npt.NDArray[np.uint8], cells: int) -> npt.NDArray[np.uint8]:
    """`roi` as `cells` cells across its longer side, each the mean of its pixels."""
    height, width = roi.shape
    longer = max(width, height)
    small = (
        max(1, min(width, round(width * cells / longer))),
        max(1, min(height, round(height * cells / longer))),
    )
    reduced = cv2.resize(roi, small, interpolation=cv2.INTER_AREA)
    return cast(U8, cv2.resize(reduced, (width, height), interpolation=cv2.INTER_NEAREST))


def blurred(roi: npt.NDArray[np.uint8], sigma: float) -> npt.NDArray[np.uint8]:
    """`roi` under a Gaussian blur of `sigma` px (applied at reduced size when σ is large)."""
    height, width = roi.shape
    factor = max(1.0, sigma / BLUR_WORKING_SIGMA)
    small = (max(1, round(width / factor)), max(1, round(height / factor)))
    reduced = cv2.resize(roi, small, interpolation=cv2.INTER_AREA) if factor > 1.0 else roi
    smooth = cv2.GaussianBlur(reduced, (0, 0), sigmaX=sigma / factor, borderType=cv2.BORDER_REPLICATE)
    if factor == 1.0:
        return cast(U8, smooth)
    return cast(U8, cv2.resize(smooth, (width, height), interpolation=cv2.INTER_LINEAR))
