"""JPEG encoding of I420 frames with OpenCV (worker process; `snapshot`).

`cv2.cvtColor(..., COLOR_YUV2BGR_I420)` reads I420 as one (height × 3/2, width) array, which exists only for
even sizes: a frame with an odd width or height has chroma planes of ceil(width/2) × ceil(height/2)
samples, so its luma plane is first padded to even (repeating the last column and row), converted, and
the padding cropped from the BGR picture. OpenCV converts with BT.601 limited-range coefficients, what
WebRTC cameras send; the JPEG is then full-range JFIF, as every decoder expects.

The picture is scaled down (INTER_AREA, an average) to `max_width` before encoding, keeping the aspect
ratio: once per snapshot, not per frame, which is why `snapshot` asks for native frames instead of
declaring a maximum size that would make the supervisor scale every frame.
"""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]


def i420_to_bgr(data: U8, width: int, height: int) -> U8:
    """The BGR picture (height, width, 3) of a whole I420 buffer, any size."""
    even_width, even_height = width + width % 2, height + height % 2
    luma_size = width * height
    if (even_width, even_height) == (width, height):
        yuv = data[: luma_size * 3 // 2].reshape(height * 3 // 2, width)
        return cast(U8, cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420))
    chroma_size = (even_width // 2) * (even_height // 2)
    padded = np.empty(even_width * even_height + 2 * chroma_size, np.uint8)
    padded_luma = padded[: even_width * even_height].reshape(even_height, even_width)
    padded_luma[:height, :width] = data[:luma_size].reshape(height, width)
    padded_luma[:height, width:] = padded_luma[:height, width - 1 : width]
    padded_luma[height:, :] = padded_luma[height - 1 : height, :]
    padded[even_width * even_height :] = data[luma_size : luma_size + 2 * chroma_size]
    yuv = padded.reshape(even_height * 3 // 2, even_width)
    return cast(U8, cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420))[:height, :width]


def fitted(picture: U8, max_width: int) -> U8:
    """`picture` scaled down to `max_width` (aspect ratio kept) if it is wider; 0: no limit."""
    height, width = picture.shape[:2]
    if not 0 < max_width < width:
        return picture
    size = (max_width, max(1, round(height * max_width / width)))
    return cast(U8, cv2.resize(picture, size, interpolation=cv2.INTER_AREA))


def encode_jpeg(picture: U8, quality: int) -> bytes:
    """A baseline JPEG of a BGR picture at `quality` (1-100)."""
    ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {picture.shape[1]}x{picture.shape[0]} JPEG")
    return encoded.tobytes()
