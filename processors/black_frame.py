"""The `black-frame` processor (worker process): runs of (almost) black pictures, decided as FFmpeg's
`blackdetect` filter decides them.

Reference: libavfilter/vf_blackdetect.c (FFmpeg 8.1), checked frame for frame against the filter itself in
tests/unit/test_black_frame.py. Per picture, a luma sample is black when it is at most
`black_pixel_threshold(pixel_black_th)`: 16 + pixel_black_th × (235 − 16) for limited-range luma, truncated
to an integer as the filter's `unsigned int` does (37 at the default 0.10: 37 is black, 38 is not), or
pixel_black_th × 255 for full-range luma (25). The picture is black when the share of black samples,
`picture_black_ratio`, is at least `picture_black_ratio_th`. Chroma plays no part.

A run of black pictures starts at the first black picture and ends at the first picture that is not black
(its time is `black_end`, as in FFmpeg: the end is where the picture stops being black, not the last black
picture). It is reported when black_end − black_start ≥ `black_min_duration`. A run still open when the
stream ends is closed at the last picture's time, as the filter does at end of stream.

Events. FFmpeg knows a run is long enough only once it has lasted `black_min_duration`; a live listener
wants to know then, not when the picture comes back. So `black_start` is emitted at the first picture at
least `black_min_duration` after the run's start (carrying the run's start time), and `black_end` when the
run ends; a run that becomes long enough exactly at its ending picture gets both at that picture. The
pairs (black_start_us, black_end_us) are exactly the runs FFmpeg logs.

Frames carry no colour range, and the SDK's I420 frames are limited range, so limited is the default;
`full_range=true` is for sources known to be full range (FFmpeg decides it from the frame's range or a
yuvj pixel format).

Cost: one comparison and one count over the luma plane (numpy), about 60 µs for a 1280×720 picture.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import Meta

from framepool.processors.api import ProcessContext, VideoFormat, VideoFrame, VideoProcessor

TOPIC = "black-frame"


class BlackFrameParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    black_min_duration: Annotated[
        float, Meta(ge=0, le=86_400, description="Shortest run of black pictures reported, in seconds (d).")
    ] = 2.0
    picture_black_ratio_th: Annotated[
        float,
        Meta(ge=0, le=1, description="Share of black luma samples that makes a picture black (pic_th)."),
    ] = 0.98
    pixel_black_th: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description="Black level as a share of the luma range: a sample at or below is black (pix_th).",
        ),
    ] = 0.10
    full_range: Annotated[
        bool, Meta(description="The luma is full range (0-255) rather than limited (16-235).")
    ] = False
    emit_ratio: Annotated[
        bool, Meta(description="Also emit every picture's picture_black_ratio (one result per frame).")
    ] = False


def black_pixel_threshold(pixel_black_th: float, full_range: bool = False) -> int:
    """The largest 8-bit luma value counted black: FFmpeg's `pixel_black_th_i`, the luma range's minimum
    plus `pixel_black_th` of its size, truncated toward zero."""
    if full_range:
        return int(pixel_black_th * 255)
    return int(16 + pixel_black_th * (235 - 16))


def picture_black_ratio(luma: npt.NDArray[np.uint8], threshold: int) -> float:
    """The share of luma samples at or below `threshold` (0 for an empty picture)."""
    if not luma.size:
        return 0.0
    return int(np.count_nonzero(luma <= threshold)) / luma.size


def is_black(luma: npt.NDArray[np.uint8], params: BlackFrameParams | None = None) -> bool:
    """Whether a picture (its luma plane) is black as `blackdetect` judges one picture; for processors that
    skip black pictures (defaults: FFmpeg's)."""
    params = params or BlackFrameParams()
    threshold = black_pixel_threshold(params.pixel_black_th, params.full_range)
    return picture_black_ratio(luma, threshold) >= params.picture_black_ratio_th


def min_duration_us(seconds: float) -> int:
    """`black_min_duration` in µs, computed as the filter converts it to its time base (here 1/1000000):
    a division by the time base as a double, truncated."""
    return int(seconds / (1 / 1_000_000))


class BlackFrame(VideoProcessor[BlackFrameParams]):
    name = "black-frame"

    def __init__(self, params: BlackFrameParams) -> None:
        super().__init__(params)
        self._threshold = black_pixel_threshold(params.pixel_black_th, params.full_range)
        self._min_duration_us = min_duration_us(params.black_min_duration)
        self._run_start_us: int | None = None  # the open run's first black picture
        self._announced = False  # black_start sent for the open run
        self._last_time_us: int | None = None
        self._frames = 0
        self._black_frames = 0
        self._runs = 0
        self._black_us = 0

    @classmethod
    def input_format(cls, params: BlackFrameParams) -> VideoFormat:
        return VideoFormat(pixel_format="I420")

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        ratio = picture_black_ratio(frame.y, self._threshold)
        black = ratio >= self.params.picture_black_ratio_th
        time_us = frame.time_us
        self._frames += 1
        if self.params.emit_ratio:
            ctx.emit(TOPIC, {"picture_black_ratio": ratio, "black": black, "frame_time_us": time_us})
        if black:
            self._black_frames += 1
            if self._run_start_us is None:
                self._run_start_us, self._announced = time_us, False
            self._announce_if_long(time_us, ctx)
        elif self._run_start_us is not None:
            self._end_run(time_us, time_us, ctx, stream_ended=False)
        self._last_time_us = time_us

    def _announce_if_long(self, time_us: int, ctx: ProcessContext) -> bool:
        """Emit black_start once the open run has lasted the minimum; whether the run is reportable."""
        start = self._run_start_us
        assert start is not None
        if time_us - start < self._min_duration_us:
            return False
        if not self._announced:
            self._announced = True
            ctx.emit(TOPIC, {"event": "black_start", "black_start_us": start, "frame_time_us": time_us})
        return True

    def _end_run(self, end_us: int, time_us: int, ctx: ProcessContext, *, stream_ended: bool) -> None:
        start = self._run_start_us
        assert start is not None
        if self._announce_if_long(end_us, ctx):
            self._runs += 1
            self._black_us += end_us - start
            ctx.emit(TOPIC, self._end_event(start, end_us, time_us, stream_ended))
        self._run_start_us = None

    @staticmethod
    def _end_event(start_us: int, end_us: int, time_us: int, stream_ended: bool) -> dict[str, Any]:
        return {
            "event": "black_end",
            "black_start_us": start_us,
            "black_end_us": end_us,
            "black_duration_us": end_us - start_us,
            "frame_time_us": time_us,
            "stream_ended": stream_ended,
        }

    def close(self, ctx: ProcessContext) -> None:
        last = self._last_time_us
        if self._run_start_us is not None and last is not None:
            # As the filter at end of stream: the run ends at the last picture's time (not its end).
            self._end_run(last, last, ctx, stream_ended=True)
        ctx.emit(
            TOPIC,
            {
                "event": "summary",
                "frames": self._frames,
                "black_frames": self._black_frames,
                "black_runs": self._runs,
                "black_us": self._black_us,
            },
        )
