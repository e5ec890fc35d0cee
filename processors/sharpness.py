"""The `sharpness` processor (worker process): the variance of the Laplacian of luma per frame or per
interval, and blur_start / blur_end events.

The measure is the one OpenCV users know as `cv2.Laplacian(gray, cv2.CV_64F).var()` (Pech-Pacheco et
al. 2000, "Diatom autofocusing in brightfield microscopy"): the 3x3 Laplacian [0 1 0; 1 -4 1; 0 1 0]
of the luma plane with OpenCV's default border (reflect-101), then the population variance over the
frame. A focused frame has strong edges, so a large variance; blur removes high frequencies and the
variance falls (it decreases strictly with the sigma of a Gaussian blur on textured content). The
Laplacian of 8-bit luma is an integer in -1020..1020, so it is computed in int16 (exact, a quarter of
the float64 image's memory traffic) and its mean and deviation taken by cv2.meanStdDev in double.

The value depends on the content and on the resolution (scaling down sharpens), so the threshold is
relative to a given camera and size: the default, 100, is the value commonly used for webcam-sized
frames. Blur starts when the value stays below `threshold` for `min_duration_ms` and ends when it
stays at or above `threshold * hysteresis` as long (framepool.processors._held_condition).

It takes I420 and reads only the luma plane, at the native resolution unless `max_width` asks the
worker for smaller frames.
"""

from __future__ import annotations

from typing import Annotated, Any

import cv2
import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import Meta

from framepool.processors._held_condition import HeldCondition
from framepool.processors._opencv_threads import OPENCV_ONE_THREAD
from framepool.processors.api import ProcessContext, VideoFormat, VideoFrame, VideoProcessor

TOPIC = "sharpness"


class SharpnessParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    threshold: Annotated[
        float, Meta(ge=0, description="Variance of the Laplacian below which a frame is blurred.")
    ] = 100.0
    hysteresis: Annotated[
        float, Meta(ge=1, le=100, description="Blur ends at or above threshold * hysteresis.")
    ] = 1.2
    min_duration_ms: Annotated[
        int, Meta(ge=0, le=3_600_000, description="How long a state must hold to start or end.")
    ] = 500
    emit_ms: Annotated[
        int, Meta(ge=0, le=3_600_000, description="Results per interval (mean, min, max); 0: every frame.")
    ] = 0
    max_width: Annotated[
        int, Meta(ge=0, le=16384, description="Widest frame asked of the worker (0: native).")
    ] = 0


def laplacian_variance(luma: npt.NDArray[np.uint8]) -> float:
    """Population variance of the 3x3 Laplacian of `luma`, as cv2.Laplacian(luma, CV_64F).var()."""
    _mean, deviation = cv2.meanStdDev(cv2.Laplacian(luma, cv2.CV_16S))
    return float(deviation[0, 0]) ** 2


class Sharpness(VideoProcessor[SharpnessParams]):
    name = "sharpness"
    opencv_threads = OPENCV_ONE_THREAD

    def __init__(self, params: SharpnessParams) -> None:
        super().__init__(params)
        self._blur = HeldCondition(params.min_duration_ms * 1000)
        self._values: list[float] = []  # the current interval's
        self._start_us = 0  # the current interval's first frame
        self._end_us = 0  # and last
        self._last_us = 0
        self._frames = 0
        self._blurred_frames = 0

    @classmethod
    def input_format(cls, params: SharpnessParams) -> VideoFormat:
        return VideoFormat(pixel_format="I420", max_width=params.max_width)

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        value = laplacian_variance(frame.y)
        self._frames += 1
        self._last_us = frame.time_us
        self._track_blur(value, frame.time_us, ctx)
        self._blurred_frames += self._blur.active
        if not self.params.emit_ms:
            ctx.emit(
                TOPIC, {"sharpness": value, "blurred": self._blur.active, "frame_time_us": frame.time_us}
            )
            return
        if self._values and frame.time_us >= self._start_us + self.params.emit_ms * 1000:
            self._emit_interval(ctx)
        if not self._values:
            self._start_us = frame.time_us
        self._values.append(value)
        self._end_us = frame.time_us

    def _track_blur(self, value: float, time_us: int, ctx: ProcessContext) -> None:
        threshold = self.params.threshold
        change = self._blur.update(value < threshold, value >= threshold * self.params.hysteresis, time_us)
        if change == "start":
            ctx.emit(
                TOPIC,
                {"event": "blur_start", "start_us": self._blur.since_us, "sharpness": value,
                 "frame_time_us": time_us},
            )  # fmt: skip
        elif change == "end":
            self._emit_end(ctx, self._blur.previous_since_us, self._blur.since_us, value, time_us)

    def _emit_end(
        self, ctx: ProcessContext, start_us: int, end_us: int, value: float | None, time_us: int
    ) -> None:
        payload: dict[str, Any] = {
            "event": "blur_end",
            "start_us": start_us,
            "end_us": end_us,
            "duration_ms": (end_us - start_us) / 1000,
            "sharpness": value,
            "frame_time_us": time_us,
        }
        if value is None:
            payload["reason"] = "stream ended"
        ctx.emit(TOPIC, payload)

    def _emit_interval(self, ctx: ProcessContext) -> None:
        values = np.asarray(self._values)
        ctx.emit(
            TOPIC,
            {
                "start_us": self._start_us,
                "end_us": self._end_us,
                "frames": len(self._values),
                "mean": float(values.mean()),
                "min": float(values.min()),
                "max": float(values.max()),
                "blurred": self._blur.active,
            },
        )
        self._values.clear()

    def close(self, ctx: ProcessContext) -> None:
        if self._values:
            self._emit_interval(ctx)
        if self._blur.active:
            self._emit_end(ctx, self._blur.since_us, self._last_us, None, self._last_us)
        ctx.emit(TOPIC, {"event": "summary", "frames": self._frames, "blurred_frames": self._blurred_frames})
