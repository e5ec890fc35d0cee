"""The `brightness` processor (worker process): FFmpeg signalstats's luma figures per frame, and
too_dark / too_bright events.

The figures are those of libavfilter/vf_signalstats.c for 8-bit luma, computed from the same 256-bin
histogram of the Y plane:
- YMIN / YMAX: the lowest and highest value present;
- YLOW / YHIGH: the 10th and 90th percentiles by signalstats's rule: the first value at which the
  cumulative count reaches lrint(pixels * 10 / 100.) (and * 90), lrint rounding half to even, as
  Python's round does;
- YAVG: the sum of the values over the pixel count (the exact integer sum, one division);
- YDIF (optional): the sum of absolute differences from the previous frame's luma over the pixel count,
  0 for the first frame (signalstats compares the first frame with itself).
Values are the luma codes as they arrive (limited range video has black at 16 and white at 235), so the
thresholds are in the same units as signalstats's YAVG.

A frame is too dark when YAVG < `dark_below`, too bright when YAVG > `bright_above`; a state starts
when that holds for `min_duration_ms` and ends when YAVG has been back past the threshold by
`hysteresis` levels as long (framepool.processors._held_condition). The histogram is cv2.calcHist (a
quarter of numpy.bincount's cost); the difference is one cv2.norm; nothing loops per pixel in Python.
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

TOPIC = "brightness"
LEVELS = np.arange(256, dtype=np.int64)


class BrightnessParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    dark_below: Annotated[float, Meta(ge=0, le=256, description="YAVG below which a frame is too dark.")] = (
        40.0
    )
    bright_above: Annotated[
        float, Meta(ge=-1, le=255, description="YAVG above which a frame is too bright.")
    ] = 220.0
    hysteresis: Annotated[
        float, Meta(ge=0, le=255, description="Levels past the threshold YAVG must come back to end a state.")
    ] = 2.0
    min_duration_ms: Annotated[
        int, Meta(ge=0, le=3_600_000, description="How long a state must hold to start or end.")
    ] = 1000
    ydif: Annotated[bool, Meta(description="Also compute YDIF (difference from the previous frame).")] = False
    emit_every: Annotated[
        int, Meta(ge=0, le=100_000, description="Emit the figures of every Nth frame; 0: events only.")
    ] = 1
    max_width: Annotated[
        int, Meta(ge=0, le=16384, description="Widest frame asked of the worker (0: native).")
    ] = 0


def luma_figures(luma: npt.NDArray[np.uint8]) -> dict[str, float]:
    """YMIN, YLOW, YAVG, YHIGH, YMAX of an 8-bit luma plane, as signalstats computes them."""
    histogram = cv2.calcHist([luma], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    pixels = int(luma.size)
    cumulative = np.cumsum(histogram)
    present = np.flatnonzero(histogram)
    return {
        "YMIN": int(present[0]),
        "YLOW": int(np.searchsorted(cumulative, round(pixels * 10 / 100.0))),
        "YAVG": int(np.dot(histogram, LEVELS)) / pixels,
        "YHIGH": int(np.searchsorted(cumulative, round(pixels * 90 / 100.0))),
        "YMAX": int(present[-1]),
    }


class Brightness(VideoProcessor[BrightnessParams]):
    name = "brightness"
    opencv_threads = OPENCV_ONE_THREAD

    def __init__(self, params: BrightnessParams) -> None:
        super().__init__(params)
        self._dark = HeldCondition(params.min_duration_ms * 1000)
        self._bright = HeldCondition(params.min_duration_ms * 1000)
        self._previous: npt.NDArray[np.uint8] | None = None
        self._frames = 0
        self._last_us = 0
        self._sum_yavg = 0.0

    @classmethod
    def input_format(cls, params: BrightnessParams) -> VideoFormat:
        return VideoFormat(pixel_format="I420", max_width=params.max_width)

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        luma = frame.y
        figures: dict[str, Any] = luma_figures(luma)
        if self.params.ydif:
            figures["YDIF"] = self._difference(luma)
        yavg = figures["YAVG"]
        self._track(ctx, yavg, frame.time_us)
        every = self.params.emit_every
        if every and self._frames % every == 0:
            figures["frame_time_us"] = frame.time_us
            ctx.emit(TOPIC, figures)
        self._frames += 1
        self._sum_yavg += yavg
        self._last_us = frame.time_us

    def _difference(self, luma: npt.NDArray[np.uint8]) -> float:
        previous = self._previous
        total = 0.0
        if previous is not None and previous.shape == luma.shape:
            total = cv2.norm(luma, previous, cv2.NORM_L1)
        self._previous = np.array(luma)  # the view dies with the call
        return float(total) / luma.size

    def _track(self, ctx: ProcessContext, yavg: float, time_us: int) -> None:
        params = self.params
        dark = self._dark.update(
            yavg < params.dark_below, yavg >= params.dark_below + params.hysteresis, time_us
        )
        bright = self._bright.update(
            yavg > params.bright_above, yavg <= params.bright_above - params.hysteresis, time_us
        )
        for name, state, change in (("too_dark", self._dark, dark), ("too_bright", self._bright, bright)):
            if change == "start":
                ctx.emit(
                    TOPIC,
                    {
                        "event": f"{name}_start",
                        "start_us": state.since_us,
                        "YAVG": yavg,
                        "frame_time_us": time_us,
                    },
                )
            elif change == "end":
                self._emit_end(ctx, name, state.previous_since_us, state.since_us, yavg, time_us)

    def _emit_end(
        self, ctx: ProcessContext, name: str, start_us: int, end_us: int, yavg: float | None, time_us: int
    ) -> None:
        payload: dict[str, Any] = {
            "event": f"{name}_end",
            "start_us": start_us,
            "end_us": end_us,
            "duration_ms": (end_us - start_us) / 1000,
            "YAVG": yavg,
            "frame_time_us": time_us,
        }
        if yavg is None:
            payload["reason"] = "stream ended"
        ctx.emit(TOPIC, payload)

    def close(self, ctx: ProcessContext) -> None:
        for name, state in (("too_dark", self._dark), ("too_bright", self._bright)):
            if state.active:
                self._emit_end(ctx, name, state.since_us, self._last_us, None, self._last_us)
        mean = self._sum_yavg / self._frames if self._frames else None
        ctx.emit(TOPIC, {"event": "summary", "frames": self._frames, "mean_yavg": mean})
