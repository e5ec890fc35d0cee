"""Pictures for the video processor tests (test process): natural images as I420 frames, converted with
FFmpeg's swscale through PyAV, so the reference path shares no code with the OpenCV the processors use."""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]


def rgb_to_i420(rgb: U8) -> U8:
    """A whole I420 buffer (luma, then U and V of ceil(w/2) × ceil(h/2)) of an RGB picture, any size."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
    height, width = rgb.shape[:2]
    sizes = [(width, height), ((width + 1) // 2, (height + 1) // 2), ((width + 1) // 2, (height + 1) // 2)]
    planes = []
    for plane, (plane_width, plane_height) in zip(frame.planes, sizes, strict=True):
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        planes.append(rows[:plane_height, :plane_width].ravel())
    return np.concatenate(planes)


def i420_to_rgb(data: U8, width: int, height: int) -> U8:
    """The RGB picture of a whole I420 buffer, as swscale renders it (BT.601, limited range)."""
    frame = av.VideoFrame(width, height, "yuv420p")
    chroma = ((width + 1) // 2, (height + 1) // 2)
    offsets = [0, width * height, width * height + chroma[0] * chroma[1]]
    for plane, start, (plane_width, plane_height) in zip(
        frame.planes, offsets, [(width, height), chroma, chroma], strict=True
    ):
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        source = data[start : start + plane_width * plane_height].reshape(plane_height, plane_width)
        rows.setflags(write=True)
        rows[:plane_height, :plane_width] = source
    return np.asarray(frame.to_ndarray(format="rgb24"))


def luma_of(data: U8, width: int, height: int) -> U8:
    """The luma plane of a whole I420 buffer."""
    return data[: width * height].reshape(height, width)


def psnr(a: U8, b: U8) -> float:
    """Peak signal-to-noise ratio of two 8-bit pictures, in dB (inf when equal)."""
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255.0**2 / error))
