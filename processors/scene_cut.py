"""The `scene-cut` processor (worker process): hard cuts between scenes, scored as PySceneDetect's
ContentDetector scores them.

Content mode (default): each frame is converted to HSV and compared with the previous one; the score is
the weighted mean absolute difference of hue, saturation and value (and optionally of Canny edge maps),
`content_val` in PySceneDetect. A frame whose score reaches `threshold` (27, PySceneDetect's default)
is a cut candidate; the minimum scene length (15 frames) then merges or suppresses cuts closer than
that, as PySceneDetect's FlashFilter does, so a flash (two cuts a few frames apart) is one event or
none. Luma mode (`luma_only`) scores the V plane alone, PySceneDetect's `luma_only=True`. The
definitions and why the numbers are the same doubles are in framepool.processors._content_score.

It takes RGB24 frames: PySceneDetect scores the BGR pixels its decoder gives it, and given the same
pixels (in RGB order) this processor computes the same scores, whatever converted them from the
stream's YUV. `downscale` resizes inside the processor exactly as PySceneDetect's SceneManager does
(default auto: the larger side brought to 256 px, which is what `scenedetect detect-content` does), so
its scores also match a SceneManager run; it is also what keeps the cost low (the HSV conversion runs
on the small image). `max_width` asks the worker for smaller frames instead; at the sizes measured it
costs more than it saves (see docs/processors/scene-cut.md).

Frame numbers count the frames this processor received, from 0. In merge mode a cut is decided up to
`min_scene_len` frames after the frame it reports (the last frame above the threshold), so its event
carries that frame's number and time. A change of resolution scores 0 (the next frame is compared
with the new size); a merge still pending when the stream ends is dropped, as PySceneDetect drops it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from msgspec import Meta

from framepool.processors._content_score import (
    COMPONENTS,
    LUMA_ONLY,
    FramePlanes,
    MinSceneLength,
    Weights,
    analysis_image,
    components,
    estimated_kernel_size,
    frame_planes,
    weighted_score,
)
from framepool.processors._opencv_threads import OPENCV_ONE_THREAD
from framepool.processors.api import ProcessContext, VideoFormat, VideoFrame, VideoProcessor

TOPIC = "scene-cut"
Weight = Annotated[float, Meta(ge=0, le=100, description="Weight of one score component.")]


class SceneCutParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    threshold: Annotated[
        float, Meta(ge=0, le=255, description="Score at or above which a frame is a cut (PySceneDetect: 27).")
    ] = 27.0
    min_scene_len: Annotated[
        int, Meta(ge=0, le=100_000, description="Minimum scene length in frames (0: every candidate cuts).")
    ] = 15
    filter_mode: Annotated[
        Literal["merge", "suppress"],
        Meta(description="Cuts closer than min_scene_len: merged into one, or the later ones dropped."),
    ] = "merge"
    luma_only: Annotated[bool, Meta(description="Score the V plane only (overrides the weights).")] = False
    weight_hue: Weight = 1.0
    weight_sat: Weight = 1.0
    weight_lum: Weight = 1.0
    weight_edges: Weight = 0.0
    kernel_size: Annotated[
        int, Meta(ge=0, le=99, description="Edge dilation kernel, odd >= 3; 0: from the resolution.")
    ] = 0
    downscale: Annotated[
        int, Meta(ge=0, le=64, description="Resize factor as SceneManager's; 0: auto (larger side 256 px).")
    ] = 0
    max_width: Annotated[
        int, Meta(ge=0, le=16384, description="Widest frame asked of the worker (0: native).")
    ] = 0
    emit_scores: Annotated[bool, Meta(description="Emit every frame's score and components.")] = False

    def __post_init__(self) -> None:
        if self.kernel_size and (self.kernel_size < 3 or self.kernel_size % 2 == 0):
            raise ValueError(f"kernel_size = {self.kernel_size}: expected 0 or an odd number >= 3")
        if not self.luma_only and not (
            self.weight_hue or self.weight_sat or self.weight_lum or self.weight_edges
        ):
            raise ValueError("the weights are all 0: give at least one component a weight")


def weights_of(params: SceneCutParams) -> Weights:
    if params.luma_only:
        return LUMA_ONLY
    return (params.weight_hue, params.weight_sat, params.weight_lum, params.weight_edges)


class SceneCut(VideoProcessor[SceneCutParams]):
    name = "scene-cut"
    opencv_threads = OPENCV_ONE_THREAD

    def __init__(self, params: SceneCutParams) -> None:
        super().__init__(params)
        self._weights = weights_of(params)
        self._filter = MinSceneLength(params.min_scene_len, merge=params.filter_mode == "merge")
        self._previous: FramePlanes | None = None
        self._kernel_size = params.kernel_size
        self._frames = 0
        self._cuts = 0
        self._last_above: tuple[int, int, float] = (0, 0, 0.0)  # frame, time, score

    @classmethod
    def input_format(cls, params: SceneCutParams) -> VideoFormat:
        return VideoFormat(pixel_format="RGB24", max_width=params.max_width)

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        number, self._frames = self._frames, self._frames + 1
        values, score = self._score(analysis_image(frame.image, self.params.downscale))
        above = score >= self.params.threshold
        if above:
            self._last_above = (number, frame.time_us, score)
        if self.params.emit_scores:
            payload: dict[str, Any] = {"frame": number, "time_us": frame.time_us, "score": score}
            payload.update(zip(COMPONENTS, values, strict=True))
            ctx.emit(TOPIC, payload)
        cut = self._filter.push(number, above)
        if cut is None:
            return
        cut_frame, cut_time_us, cut_score = (
            (number, frame.time_us, score) if cut == number else self._last_above
        )
        self._cuts += 1
        ctx.emit(TOPIC, {"event": "cut", "frame": cut_frame, "time_us": cut_time_us, "score": cut_score})

    def _score(self, image: np.ndarray) -> tuple[Weights, float]:
        """This frame's components and score against the previous frame (zeros for the first frame and
        after a change of resolution)."""
        kernel = None
        if self._weights[3] > 0.0:
            size = self._kernel_size or estimated_kernel_size(image.shape[1], image.shape[0])
            kernel = np.ones((size, size), np.uint8)
        current = frame_planes(image, kernel)
        previous, self._previous = self._previous, current
        if previous is None or previous.hsv.shape != current.hsv.shape:
            return (0.0, 0.0, 0.0, 0.0), 0.0
        values = components(current, previous)
        return values, weighted_score(values, self._weights)

    def close(self, ctx: ProcessContext) -> None:
        ctx.emit(TOPIC, {"event": "summary", "frames": self._frames, "cuts": self._cuts})
