"""The `privacy-blur` processor (worker process): faces pixelated or blurred, published as a video track.

Every input frame becomes one output frame of the same size (I420), a copy of the input in which only the
regions around detected faces are rewritten: every other pixel is bit-identical to the input.

Cost is what shapes the design (target: ≤ 10 % of a core at 640×360, 30 fps). Detection is the expensive
part, so it runs at a reduced resolution (`detect_width`, default 320 px) and rate (`detections_per_s`,
default 5, on media time), and the boxes are held between detections; the cascades are loaded once per
worker (`framepool.processors._faces`) and OpenCV runs single-threaded there
(`framepool.processors._opencv_threads`). Per frame the work is one
copy of the buffer plus the redaction inside the boxes.

A face the detector loses for one detection (a turned head, motion blur) stays covered for `hold_ms`; a
box is replaced as soon as a new detection overlaps it.

Deadline: a detection that takes longer than `detection_deadline_ms` (on a starved or overloaded worker)
is a miss. `fail_mode="hold"` keeps the last boxes, never expiring them, plus what the late detection
found; `fail_mode="blur-all"` redacts the whole frame. Either lasts until a detection finishes in time.
The seams to test this are the constructor's `detector` and `clock` arguments (a detector that advances
a fake clock), or a tiny `detection_deadline_ms` with the real one.

Events (topic `privacy-blur`): `faces` when the number of faces found by a detection in time changes
(with their boxes, undilated, in frame pixels), `deadline_missed` at the first miss of a run of misses,
`deadline_recovered` at the next detection in time, and a `summary` on close.

CenterFace (an ONNX face detector, MIT) would be more robust to pose than Haar cascades; it is not
offered: its model file is not packaged in any wheel available here, and framepool does not download
models at run time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from msgspec import Meta

from framepool.processors._faces import Box, CascadeDetector, FaceDetector, dilated, load_cascades, overlaps
from framepool.processors._opencv_threads import OPENCV_ONE_THREAD
from framepool.processors._redaction import Mode, redact
from framepool.processors.api import ProcessContext, VideoFormat, VideoFrame, VideoProcessor
from framepool.processors.resource import WorkerResource

TOPIC = "privacy-blur"


class PrivacyBlurParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mode: Annotated[Mode, Meta(description="How faces are hidden: pixelate or (Gaussian) blur.")] = "pixelate"
    # 6 cells across a region 1.5 times the face leave ~4 across the face: with 8, a cascade at full
    # resolution still found 3 of 44 pixelated faces (tests/unit/test_privacy_blur.py), with 6 none.
    cells: Annotated[
        int, Meta(ge=2, le=64, description="Pixelate: cells across the longer side of a face region.")
    ] = 6
    blur_ratio: Annotated[
        float,
        Meta(gt=0, le=1, description="Blur: Gaussian σ as a fraction of the face region's longer side."),
    ] = 0.2
    dilate: Annotated[
        float, Meta(ge=0, le=2, description="Each side of a face box moves out by this fraction of its size.")
    ] = 0.25
    detect_width: Annotated[
        int, Meta(ge=0, le=4096, description="Width of the luma copy faces are detected on; 0: native.")
    ] = 320
    detections_per_s: Annotated[
        float, Meta(gt=0, le=120, description="Detections per second of media time; boxes held in between.")
    ] = 5.0
    scale_factor: Annotated[
        float,
        Meta(
            ge=1.05,
            le=2.0,
            description=(
                "Cascade scaleFactor, the step between face sizes searched: 1.1 (OpenCV's default) costs "
                "~1.3 times 1.15; 1.2 costs ~0.8 times and misses more faces."
            ),
        ),
    ] = 1.15
    min_neighbors: Annotated[
        int,
        Meta(
            ge=1, le=20, description="Cascade minNeighbors: higher finds fewer false faces, and fewer faces."
        ),
    ] = 3
    profile: Annotated[
        bool, Meta(description="Also run the profile-face cascade (three times the cost).")
    ] = False
    hold_ms: Annotated[
        int, Meta(ge=0, le=10_000, description="Keep covering a face this long after detection loses it.")
    ] = 400
    detection_deadline_ms: Annotated[
        float, Meta(gt=0, le=10_000, description="A detection that takes longer than this is a miss.")
    ] = 100.0
    fail_mode: Annotated[
        Literal["hold", "blur-all"],
        Meta(
            description="After a miss, until a detection in time: hold the last boxes, or redact everything."
        ),
    ] = "hold"


class PrivacyBlur(VideoProcessor[PrivacyBlurParams]):
    name = "privacy-blur"
    publishes = True  # the redacted track is its output
    opencv_threads = OPENCV_ONE_THREAD
    cascades = WorkerResource(load_cascades)

    def __init__(
        self,
        params: PrivacyBlurParams,
        *,
        detector: FaceDetector | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """`detector` and `clock` are seams for tests (see module); by default the worker's cascades."""
        super().__init__(params)
        self._detect: FaceDetector = detector or CascadeDetector(
            self.cascades,
            detect_width=params.detect_width,
            scale_factor=params.scale_factor,
            min_neighbors=params.min_neighbors,
            profile=params.profile,
        )
        self._clock = clock
        self._period_us = round(1e6 / params.detections_per_s)
        self._next_detection_us: int | None = None
        self._held: list[tuple[Box, int]] = []  # face boxes and when a detection last saw them
        self._faces = 0  # found by the last detection in time
        self._missing = 0  # consecutive detections past the deadline
        self._redact_all = False
        self._stats = {"frames": 0, "detections": 0, "deadline_misses": 0, "max_faces": 0}
        self._detection_seconds = 0.0

    @classmethod
    def input_format(cls, params: PrivacyBlurParams) -> VideoFormat:
        return VideoFormat(pixel_format="I420")

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        if self._next_detection_us is None or frame.time_us >= self._next_detection_us:
            self._next_detection_us = frame.time_us + self._period_us
            self._detect_faces(frame, ctx)
        output = np.array(frame.data)  # the input's buffer dies with this call; the copy is the output
        width, height = frame.width, frame.height
        if self._redact_all:
            redact(output, width, height, (0, 0, width, height), self.params.mode, self._strength)
        else:
            for box, _seen_us in self._held:
                region = dilated(box, self.params.dilate, width, height)
                redact(output, width, height, region, self.params.mode, self._strength)
        ctx.publish_video(output, width, height, "I420")
        self._stats["frames"] += 1

    @property
    def _strength(self) -> float:
        return float(self.params.cells) if self.params.mode == "pixelate" else self.params.blur_ratio

    def _detect_faces(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        started = self._clock()
        found = self._detect(frame.y)
        elapsed = self._clock() - started
        self._detection_seconds += elapsed
        self._stats["detections"] += 1
        if elapsed * 1000.0 > self.params.detection_deadline_ms:
            self._missed(found, elapsed, frame.time_us, ctx)
            return
        if self._missing:
            ctx.emit(
                TOPIC, {"event": "deadline_recovered", "missed": self._missing, "time_us": frame.time_us}
            )
            self._missing = 0
        self._redact_all = False
        self._held = merged_boxes(found, self._held, frame.time_us, self.params.hold_ms * 1000)
        if len(found) != self._faces:
            self._faces = len(found)
            self._stats["max_faces"] = max(self._stats["max_faces"], len(found))
            boxes = [list(box) for box in found]
            ctx.emit(TOPIC, {"event": "faces", "count": len(found), "boxes": boxes, "time_us": frame.time_us})

    def _missed(self, found: list[Box], elapsed: float, time_us: int, ctx: ProcessContext) -> None:
        """A detection past its deadline: its boxes are added (they are faces in this frame), none expire."""
        self._stats["deadline_misses"] += 1
        if not self._missing:
            ctx.emit(
                TOPIC,
                {
                    "event": "deadline_missed",
                    "detection_ms": round(elapsed * 1000.0, 3),
                    "deadline_ms": self.params.detection_deadline_ms,
                    "fail_mode": self.params.fail_mode,
                    "time_us": time_us,
                },
            )
        self._missing += 1
        self._held = merged_boxes(found, self._held, time_us, None)
        self._redact_all = self.params.fail_mode == "blur-all"

    def close(self, ctx: ProcessContext) -> None:
        summary: dict[str, Any] = {"event": "summary", **self._stats}
        detections = self._stats["detections"]
        summary["detection_ms_mean"] = (
            round(self._detection_seconds * 1000.0 / detections, 3) if detections else None
        )
        ctx.emit(TOPIC, summary)


def merged_boxes(
    found: list[Box], held: list[tuple[Box, int]], time_us: int, hold_us: int | None
) -> list[tuple[Box, int]]:
    """The boxes to cover after a detection: what it found, plus the held boxes it found nothing over that
    were seen within `hold_us` (None: all of them)."""
    kept = [
        (box, seen_us)
        for box, seen_us in held
        if (hold_us is None or time_us - seen_us <= hold_us) and not any(overlaps(box, new) for new in found)
    ]
    return [(box, time_us) for box in found] + kept
