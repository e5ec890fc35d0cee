"""Downscaling frames to a processor's maximum resolution (worker process).

The supervisor hands frames over at the size the room sends them: scaling there would put per-pixel
work on the one process that must never block. The worker scales instead, just before `process`, by
the smallest integer factor that fits the frame within the processor's maximum, averaging each
factor × factor block (a box filter: cheap, alias-free enough for analysis, exact for flat areas).
Integer factors keep it one reshape and one mean per plane; a frame of 1280×720 with a maximum of
640×360 becomes exactly 640×360, one with a maximum of 500×500 becomes 426×240.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from framepool.processors.api import PixelFormat, VideoFormat, frame_bytes


def scale_factor(width: int, height: int, fmt: VideoFormat) -> int:
    """The smallest integer factor that fits width × height within the format's maximum (1: no scaling)."""
    factor = 1
    if fmt.max_width and width > fmt.max_width:
        factor = max(factor, math.ceil(width / fmt.max_width))
    if fmt.max_height and height > fmt.max_height:
        factor = max(factor, math.ceil(height / fmt.max_height))
    return factor


def _box(plane: npt.NDArray[np.uint8], factor: int, out_h: int, out_w: int) -> npt.NDArray[np.uint8]:
    """Mean of each factor × factor block; trailing rows/columns that do not fill a block are dropped."""
    depth = plane.shape[2] if plane.ndim == 3 else 1
    cropped = plane[: out_h * factor, : out_w * factor].reshape(out_h, factor, out_w, factor, depth)
    mean = cropped.mean(axis=(1, 3), dtype=np.float32)
    out = np.empty((out_h, out_w, depth), np.uint8)
    np.rint(mean, out=mean)
    out[...] = mean
    return out if plane.ndim == 3 else out[:, :, 0]


def downscale(
    data: npt.NDArray[np.uint8], width: int, height: int, pixel_format: PixelFormat, factor: int
) -> tuple[npt.NDArray[np.uint8], int, int]:
    """A new flat buffer with the frame scaled down by `factor`, and its width and height."""
    out_w, out_h = max(1, width // factor), max(1, height // factor)
    if pixel_format == "I420":
        cw, ch = (width + 1) // 2, (height + 1) // 2
        ocw, och = (out_w + 1) // 2, (out_h + 1) // 2
        y = data[: width * height].reshape(height, width)
        u = data[width * height : width * height + cw * ch].reshape(ch, cw)
        v = data[width * height + cw * ch : width * height + 2 * cw * ch].reshape(ch, cw)
        out = np.empty(frame_bytes(out_w, out_h, "I420"), np.uint8)
        out[: out_w * out_h] = _box(y, factor, out_h, out_w).ravel()
        chroma_factor_h, chroma_factor_w = max(1, ch // och), max(1, cw // ocw)
        chroma_factor = min(factor, chroma_factor_h, chroma_factor_w)
        for index, plane in enumerate((u, v)):
            start = out_w * out_h + index * ocw * och
            scaled = _box(plane, chroma_factor, och, ocw) if chroma_factor > 1 else plane[:och, :ocw]
            out[start : start + ocw * och] = scaled.ravel()
        return out, out_w, out_h
    depth = 3 if pixel_format == "RGB24" else 4
    image = data[: width * height * depth].reshape(height, width, depth)
    return _box(image, factor, out_h, out_w).reshape(-1), out_w, out_h
