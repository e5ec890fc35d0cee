"""Downscaling frames to a processor's maximum resolution (worker process).

The supervisor hands frames over at the size the room sends them: scaling there would put per-pixel
work on the one process that must never block. The worker scales instead, just before `process`, by
the smallest integer factor that fits the frame within the processor's maximum, averaging each
factor × factor block (a box filter: cheap, alias-free enough for analysis, exact for flat areas), the
mean rounded half up. Square blocks go through OpenCV's INTER_AREA resize, which computes exactly that
block mean in fixed point (about 50× cheaper than numpy's reshape and mean: 0.16 ms instead of 9 ms for
a 720p luma plane halved on the machine in the README); OpenCV is imported by the first worker that scales,
never by one that does not. A frame of 1280×720 with a maximum of
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


def _box_into(plane: npt.NDArray[np.uint8], factor: int, dest: npt.NDArray[np.uint8]) -> None:
    """Write the mean of each block of `plane` into `dest` (out_h, out_w[, depth]); trailing rows/columns
    that do not fill a block are dropped. A block is factor × factor, narrowed on an axis where the plane
    has fewer than `factor` source lines per output line (a 1000×3 frame scaled by 10 is 100×1: its blocks
    are 10 wide and 3 high)."""
    out_h, out_w = dest.shape[0], dest.shape[1]
    fy = min(factor, plane.shape[0] // out_h)
    fx = min(factor, plane.shape[1] // out_w)
    if fy == fx == 1:
        dest[...] = plane[:out_h, :out_w].reshape(dest.shape)
        return
    cropped_plane = plane[: out_h * fy, : out_w * fx]
    if fy == fx and (plane.ndim == 2 or plane.shape[2] in (3, 4)):
        import cv2  # the worker that scales only: OpenCV costs memory a worker that does not scale never pays

        cv2.resize(cropped_plane, (out_w, out_h), dst=dest, interpolation=cv2.INTER_AREA)
        return
    depth = plane.shape[2] if plane.ndim == 3 else 1
    cropped = cropped_plane.reshape(out_h, fy, out_w, fx, depth)
    # float32 sums of uint8 are exact up to 2**24 / 255 pixels a block; only absurd factors need float64.
    mean = cropped.mean(axis=(1, 3), dtype=np.float32 if fy * fx <= 65_000 else np.float64)
    np.floor(mean + 0.5, out=mean)  # half up, as INTER_AREA rounds
    dest[...] = mean.reshape(dest.shape)


def downscale(
    data: npt.NDArray[np.uint8],
    width: int,
    height: int,
    pixel_format: PixelFormat,
    factor: int,
    out: npt.NDArray[np.uint8] | None = None,
) -> tuple[npt.NDArray[np.uint8], int, int]:
    """The frame scaled down by `factor` as a flat buffer, and its width and height.

    The buffer is `out` when it has the scaled frame's size (a caller scaling every frame of a stream passes
    the previous result back, so the output is not allocated per frame), else a new one.
    """
    out_w, out_h = max(1, width // factor), max(1, height // factor)
    size = frame_bytes(out_w, out_h, pixel_format)
    if out is None or out.size != size or out.dtype != np.uint8:
        out = np.empty(size, np.uint8)
    if pixel_format == "I420":
        cw, ch = (width + 1) // 2, (height + 1) // 2
        ocw, och = (out_w + 1) // 2, (out_h + 1) // 2
        y = data[: width * height].reshape(height, width)
        u = data[width * height : width * height + cw * ch].reshape(ch, cw)
        v = data[width * height + cw * ch : width * height + 2 * cw * ch].reshape(ch, cw)
        _box_into(y, factor, out[: out_w * out_h].reshape(out_h, out_w))
        for index, plane in enumerate((u, v)):
            start = out_w * out_h + index * ocw * och
            _box_into(plane, factor, out[start : start + ocw * och].reshape(och, ocw))
        return out, out_w, out_h
    depth = 3 if pixel_format == "RGB24" else 4
    image = data[: width * height * depth].reshape(height, width, depth)
    _box_into(image, factor, out.reshape(out_h, out_w, depth))
    return out, out_w, out_h
