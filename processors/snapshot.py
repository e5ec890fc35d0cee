"""The `snapshot` processor (worker process): a JPEG of the video every `interval_ms`, for a vision model.

Each JPEG goes out as a blob (`ctx.send_bytes`: live a LiveKit byte stream on topic `snapshot`, since a
JPEG is above the 15 KiB data-packet limit; offline a file), with a small result describing it
(`{"event": "snapshot", "time_us", "bytes", "width", "height", "sharpness", "name"}`) and a summary on
close.

Intervals are counted in media time from the first frame: [t0, t0 + interval), [t0 + interval, ...).
- `select="latest"`: the snapshot is the first usable frame at or after each interval's start (the frame
  that is current then; one that is black or frozen delays the snapshot to the next usable frame, so a
  long black stretch yields one snapshot when the picture returns, not a burst).
- `select="sharpest"`: the usable frame of the interval with the highest variance of the Laplacian of its
  luma (OpenCV's 3×3 aperture, as the `sharpness` processor measures it), sent when the interval ends (at
  the first frame of the next, or on close for the last, partial one). Only the best candidate so far is
  copied (one buffer per stream), never every frame.

Usable means neither black nor frozen, decided with the functions of the `black-frame` and `frozen-frame`
processors, so a snapshot is skipped exactly when those would count the picture:
- black: FFmpeg `blackdetect`'s test of one picture: at least `picture_black_ratio_th` (0.98) of the luma
  samples at or below the black level (`pixel_black_th` 0.10 of the limited luma range: 37);
- frozen: FFmpeg `freezedetect`'s: the picture differs from the last picture that changed by a mean
  absolute difference (all planes, 0..1) of at most `frozen_noise` (0.001, -60 dB), and that change is at
  least `frozen_ms` (2 s, freezedetect's d) old. A still picture that never changes (a slide) counts as
  frozen after `frozen_ms`: its last change was already snapshotted, and a vision model gains nothing
  from the same picture again. `skip_frozen=false` sends it.

Per frame, only the freeze tracking (one L1 norm, and a copy of the frame when it changed) runs for every
frame; the black check and the Laplacian (`sharpness`'s `laplacian_variance`) run on candidates only
(every frame in `sharpest` mode). Decoding-side
choices (colour conversion, odd sizes, scaling before encoding) are in `framepool.processors._jpeg`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import Meta

from framepool.processors._jpeg import encode_jpeg, fitted, i420_to_bgr
from framepool.processors._opencv_threads import OPENCV_ONE_THREAD
from framepool.processors.api import ProcessContext, VideoFormat, VideoFrame, VideoProcessor
from framepool.processors.black_frame import BlackFrameParams, is_black
from framepool.processors.frozen_frame import FrozenFrameParams, is_frozen
from framepool.processors.sharpness import laplacian_variance

TOPIC = "snapshot"


class SnapshotParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    interval_ms: Annotated[
        int, Meta(ge=100, le=86_400_000, description="Time between snapshots, in media time.")
    ] = 5000
    select: Annotated[
        Literal["latest", "sharpest"],
        Meta(description="The frame at each interval's start, or the interval's sharpest frame."),
    ] = "latest"
    quality: Annotated[
        int, Meta(ge=1, le=100, description="JPEG quality (OpenCV's IMWRITE_JPEG_QUALITY).")
    ] = 85
    max_width: Annotated[
        int, Meta(ge=0, le=16384, description="Wider frames are scaled down to this width; 0: native.")
    ] = 1280
    skip_black: Annotated[bool, Meta(description="Never send a black frame.")] = True
    pixel_black_th: Annotated[
        float,
        Meta(ge=0, le=1, description="Black level, a share of the limited luma range (blackdetect pix_th)."),
    ] = 0.10
    picture_black_ratio_th: Annotated[
        float, Meta(ge=0, le=1, description="Share of black luma samples that makes a frame black (pic_th).")
    ] = 0.98
    skip_frozen: Annotated[bool, Meta(description="Never send a frozen frame.")] = True
    frozen_noise: Annotated[
        float,
        Meta(
            ge=0, le=1, description="Largest mean absolute difference (0..1) still frozen (freezedetect n)."
        ),
    ] = 0.001
    frozen_ms: Annotated[
        int, Meta(ge=0, le=3_600_000, description="A frame is frozen once nothing changed for this long (d).")
    ] = 2000


class FreezeTracker:
    """`freezedetect`'s state for one stream: the last picture that changed (the reference) and its time."""

    def __init__(self, params: FrozenFrameParams) -> None:
        self._params = params
        self._frozen_us = round(params.duration * 1_000_000)
        self._reference = np.empty(0, np.uint8)
        self._geometry = (0, 0)
        self._reference_us = 0

    def frozen(self, frame: VideoFrame) -> bool:
        """Track this frame; whether it is frozen (unchanged since a reference at least `duration` old)."""
        geometry = (frame.width, frame.height)
        if geometry == self._geometry and is_frozen(self._reference, frame.data, *geometry, self._params):
            return frame.time_us - self._reference_us >= self._frozen_us
        if self._reference.size != frame.data.size:
            self._reference = np.empty_like(frame.data)
        np.copyto(self._reference, frame.data)  # the frame's buffer dies with the call
        self._geometry, self._reference_us = geometry, frame.time_us
        return False


class Candidate:
    """The sharpest usable frame of the current interval: one buffer, overwritten by a sharper frame."""

    def __init__(self) -> None:
        self.data: npt.NDArray[np.uint8] = np.empty(0, np.uint8)
        self.width = self.height = self.time_us = 0
        self.sharpness = 0.0
        self.present = False

    def offer(self, frame: VideoFrame, sharpness: float) -> None:
        """Keep a copy of `frame` if it is the interval's first usable frame or sharper than the one kept."""
        if self.present and sharpness <= self.sharpness:
            return
        if self.data.size != frame.data.size:
            self.data = np.empty_like(frame.data)
        np.copyto(self.data, frame.data)
        self.width, self.height, self.time_us = frame.width, frame.height, frame.time_us
        self.sharpness, self.present = sharpness, True


class Snapshot(VideoProcessor[SnapshotParams]):
    name = "snapshot"
    opencv_threads = OPENCV_ONE_THREAD

    def __init__(self, params: SnapshotParams) -> None:
        super().__init__(params)
        self._black = BlackFrameParams(
            pixel_black_th=params.pixel_black_th, picture_black_ratio_th=params.picture_black_ratio_th
        )
        self._freeze = FreezeTracker(
            FrozenFrameParams(noise=params.frozen_noise, duration=params.frozen_ms / 1000)
        )
        self._interval_us = params.interval_ms * 1000
        self._start_us: int | None = None  # the first frame's time: intervals count from it
        self._interval = 0  # the current interval's index
        self._due = True  # select=latest: the current interval has no snapshot yet
        self._candidate = Candidate()
        self._stats = {"snapshots": 0, "bytes": 0, "skipped_black": 0, "skipped_frozen": 0}

    @classmethod
    def input_format(cls, params: SnapshotParams) -> VideoFormat:
        return VideoFormat(pixel_format="I420")

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        luma = frame.y
        frozen = self.params.skip_frozen and self._freeze.frozen(frame)
        if self._start_us is None:
            self._start_us = frame.time_us
        interval = (frame.time_us - self._start_us) // self._interval_us
        if interval != self._interval:
            if self.params.select == "sharpest":
                self._send_candidate(ctx)
            self._interval, self._due = interval, True
        if self.params.select == "latest" and not self._due:
            return
        if not self._usable(luma, frozen):
            return
        sharpness = laplacian_variance(luma)
        if self.params.select == "sharpest":
            self._candidate.offer(frame, sharpness)
        else:
            self._send(ctx, frame.data, frame.width, frame.height, frame.time_us, sharpness)
            self._due = False

    def _usable(self, luma: npt.NDArray[np.uint8], frozen: bool) -> bool:
        if frozen:
            self._stats["skipped_frozen"] += 1
            return False
        if self.params.skip_black and is_black(luma, self._black):
            self._stats["skipped_black"] += 1
            return False
        return True

    def _send_candidate(self, ctx: ProcessContext) -> None:
        best = self._candidate
        if best.present:
            best.present = False
            self._send(ctx, best.data, best.width, best.height, best.time_us, best.sharpness)

    def _send(
        self,
        ctx: ProcessContext,
        data: npt.NDArray[np.uint8],
        width: int,
        height: int,
        time_us: int,
        sharpness: float,
    ) -> None:
        picture = fitted(i420_to_bgr(data, width, height), self.params.max_width)
        jpeg = encode_jpeg(picture, self.params.quality)
        out_height, out_width = picture.shape[:2]
        name = f"snapshot-{time_us}.jpg"
        described = {
            "time_us": time_us,
            "width": out_width,
            "height": out_height,
            "sharpness": round(sharpness, 3),
        }
        attributes = {key: str(value) for key, value in described.items()}
        ctx.send_bytes(TOPIC, jpeg, name=name, mime_type="image/jpeg", attributes=attributes)
        ctx.emit(TOPIC, {"event": "snapshot", **described, "bytes": len(jpeg), "name": name})
        self._stats["snapshots"] += 1
        self._stats["bytes"] += len(jpeg)

    def close(self, ctx: ProcessContext) -> None:
        if self.params.select == "sharpest":
            self._send_candidate(ctx)
        summary: dict[str, Any] = {"event": "summary", **self._stats}
        ctx.emit(TOPIC, summary)
