"""The `video-motion` processor (worker process): motion score per frame and motion start/end events.

The score is the mean absolute difference of luma between consecutive frames (0..255), measured on a
grid subsampled by `downscale` in both directions: motion is a coarse signal, and at downscale 4 a 1080p
frame costs 1/16 of the work. Subsampling by slicing (not averaging) keeps it a view plus one copy.

Motion starts when the score reaches `threshold` and ends only when it falls below
`threshold * hysteresis`, so a score hovering around the threshold does not produce a storm of events.
With `visualize=true` each frame's (amplified) difference image is published as an I420 frame of the
output video track, at the subsampled resolution; the first frame, which has no predecessor, publishes a
black image so the output track has exactly one frame per input frame.

It takes I420 frames at the native resolution whatever its parameters: `downscale` slices the luma plane,
which is cheaper than the block average a declared maximum resolution would make the worker compute.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import Meta

from framepool.processors.api import ProcessContext, VideoFormat, VideoFrame, VideoProcessor

TOPIC = "video-motion"


class VideoMotionParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    threshold: Annotated[float, Meta(gt=0, le=255, description="Score at which motion starts.")] = 6.0
    hysteresis: Annotated[
        float, Meta(gt=0, le=1, description="Motion ends below threshold * hysteresis.")
    ] = 0.5
    downscale: Annotated[int, Meta(ge=1, le=64, description="Use every Nth pixel in each direction.")] = 4
    emit_every: Annotated[int, Meta(ge=1, description="Emit the score every N frames (events always).")] = 1
    visualize: Annotated[bool, Meta(description="Publish the difference image as a video track.")] = False
    gain: Annotated[float, Meta(gt=0, le=64, description="Amplification of the visualised difference.")] = 4.0


def motion_score(
    previous: npt.NDArray[np.uint8], current: npt.NDArray[np.uint8]
) -> tuple[float, npt.NDArray[np.int16]]:
    """Mean absolute luma difference and the absolute difference image."""
    difference = np.abs(current.astype(np.int16) - previous.astype(np.int16))
    return float(difference.mean()), difference


class VideoMotion(VideoProcessor[VideoMotionParams]):
    name = "video-motion"

    def __init__(self, params: VideoMotionParams) -> None:
        super().__init__(params)
        self._previous: npt.NDArray[np.uint8] | None = None
        self._in_motion = False
        self._frames = 0

    @classmethod
    def input_format(cls, params: VideoMotionParams) -> VideoFormat:
        return VideoFormat(pixel_format="I420")

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        step = self.params.downscale
        luma = frame.y[::step, ::step]
        # Even dimensions so the visualisation is a valid I420 frame; copy because the view dies with the
        # call.
        current = np.array(luma[: luma.shape[0] & ~1, : luma.shape[1] & ~1])
        previous = self._previous
        if previous is None or previous.shape != current.shape:
            score, difference = 0.0, np.zeros(current.shape, np.int16)
        else:
            score, difference = motion_score(previous, current)
        self._previous = current
        self._track_motion(score, frame.time_us, ctx)
        if self._frames % self.params.emit_every == 0:
            ctx.emit(
                TOPIC, {"score": round(score, 3), "motion": self._in_motion, "frame_time_us": frame.time_us}
            )
        self._frames += 1
        if self.params.visualize:
            self._publish_difference(difference, ctx)

    def _track_motion(self, score: float, time_us: int, ctx: ProcessContext) -> None:
        if not self._in_motion and score >= self.params.threshold:
            self._in_motion = True
            ctx.emit(TOPIC, {"event": "motion_start", "score": round(score, 3), "frame_time_us": time_us})
        elif self._in_motion and score < self.params.threshold * self.params.hysteresis:
            self._in_motion = False
            ctx.emit(TOPIC, {"event": "motion_end", "score": round(score, 3), "frame_time_us": time_us})

    def _publish_difference(self, difference: npt.NDArray[np.int16], ctx: ProcessContext) -> None:
        height, width = difference.shape
        if not (width and height):
            return
        luma = np.clip(difference * self.params.gain, 0, 255).astype(np.uint8)
        neutral_chroma = np.full(2 * (width // 2) * (height // 2), 128, np.uint8)
        ctx.publish_video(np.concatenate((luma.ravel(), neutral_chroma)), width, height, "I420")

    def close(self, ctx: ProcessContext) -> None:
        if self._in_motion:
            ctx.emit(
                TOPIC, {"event": "motion_end", "score": None, "frame_time_us": None, "reason": "stream ended"}
            )
            self._in_motion = False
