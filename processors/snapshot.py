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

Usable means neither black nor frozen. These checks are small approximations of FFmpeg's `blackdetect` and
`freezedetect` with their default thresholds, on luma only:
- black: at least `black_ratio` (0.98, blackdetect's pic_th) of the luma samples are ≤ `black_luma` (37:
  16 + 0.10 × 219, blackdetect's pix_th 0.10 on limited-range video);
- frozen: the luma has not changed (mean absolute difference to the previous frame ≤ `frozen_mad`, 0.256
  levels: freezedetect's noise -60 dB of 256) for at least `frozen_ms` (2 s, freezedetect's d). A still
  picture that never changes (a slide) counts as frozen after `frozen_ms`: its last change was already
  snapshotted, and a vision model gains nothing from the same picture again. `skip_frozen=false` sends it.

Per frame, only the freeze tracking (one L1 norm and one copy of the luma plane) runs for every frame; the
black check and the Laplacian run on candidates only (every frame in `sharpest` mode). Decoding-side
choices (colour conversion, odd sizes, scaling before encoding) are in `framepool.processors._jpeg`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import cv2
import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import Meta

from framepool.processors._jpeg import encode_jpeg, fitted, i420_to_bgr
from framepool.processors.api import ProcessContext, VideoFormat, VideoFrame, VideoProcessor

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
    black_luma: Annotated[int, Meta(ge=0, le=255, description="A luma sample at or below this is dark.")] = 37
    black_ratio: Annotated[
        float, Meta(gt=0, le=1, description="A frame is black when this fraction of its luma is dark.")
    ] = 0.98
    skip_frozen: Annotated[bool, Meta(description="Never send a frozen frame.")] = True
    frozen_mad: Annotated[
        float,
        Meta(ge=0, le=255, description="Luma mean absolute difference at or below which nothing changed."),
    ] = 0.256
    frozen_ms: Annotated[
        int, Meta(ge=0, le=3_600_000, description="A frame is frozen once nothing changed for this long.")
    ] = 2000


def laplacian_variance(luma: npt.NDArray[np.uint8]) -> float:
    """Variance of the 3×3 Laplacian of `luma` (OpenCV's `Laplacian(luma, CV_64F).var()`): int16 holds the
    Laplacian of 8-bit samples exactly (|value| ≤ 1020) and is ~6 times faster than float64."""
    _mean, deviation = cv2.meanStdDev(cv2.Laplacian(luma, cv2.CV_16S))
    return float(deviation[0, 0]) ** 2


def is_black(luma: npt.NDArray[np.uint8], black_luma: int, black_ratio: float) -> bool:
    """Whether at least `black_ratio` of the luma samples are ≤ `black_luma`."""
    return int(np.count_nonzero(luma <= black_luma)) >= black_ratio * luma.size


class FreezeTracker:
    """When the luma last changed by more than `frozen_mad` (mean absolute difference between frames)."""

    def __init__(self, frozen_mad: float, frozen_us: int) -> None:
        self._frozen_mad = frozen_mad
        self._frozen_us = frozen_us
        self._previous: npt.NDArray[np.uint8] | None = None
        self._changed_us = 0

    def frozen(self, luma: npt.NDArray[np.uint8], time_us: int) -> bool:
        """Track this frame; whether nothing has changed for `frozen_us` up to it."""
        previous = self._previous
        if previous is None or previous.shape != luma.shape:
            self._previous = np.array(luma)  # the frame's view dies with the call
            self._changed_us = time_us
            return False
        if cv2.norm(luma, previous, cv2.NORM_L1) > self._frozen_mad * luma.size:
            self._changed_us = time_us
        np.copyto(previous, luma)
        return time_us - self._changed_us >= self._frozen_us


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

    def __init__(self, params: SnapshotParams) -> None:
        super().__init__(params)
        cv2.setNumThreads(1)  # the worker is pinned to one core: OpenCV's thread pool would only contend
        self._freeze = FreezeTracker(params.frozen_mad, params.frozen_ms * 1000)
        self._interval_us = params.interval_ms * 1000
        self._start_us: int | None = None  # the first frame's time: intervals count from it
        self._interval = 0  # the current interval's index
        self._due = True  # latest: the current interval has no snapshot yet (sharpest: see Candidate)
        self._candidate = Candidate()
        self._stats = {"snapshots": 0, "bytes": 0, "skipped_black": 0, "skipped_frozen": 0}

    @classmethod
    def input_format(cls, params: SnapshotParams) -> VideoFormat:
        return VideoFormat(pixel_format="I420")

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        luma = frame.y
        frozen = self.params.skip_frozen and self._freeze.frozen(luma, frame.time_us)
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
        if self.params.skip_black and is_black(luma, self.params.black_luma, self.params.black_ratio):
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
