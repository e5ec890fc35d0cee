"""`privacy-blur` on labelled pictures: the face of scikit-image's `astronaut`, labelled by hand below, in
the original and pasted at other places and scales into other pictures. Detection against the labels (IoU
of the undilated boxes), every pixel outside the redacted regions bit-identical, no face found on the output
by the same cascade at full resolution nor by a different one, and the deadline's fail modes with a scripted
detector on a fake clock."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from skimage import data

from framepool.processors import instantiate, parse_spec
from framepool.processors._faces import Box, dilated
from framepool.processors.privacy_blur import PrivacyBlur, PrivacyBlurParams
from tests.support.context import RecordingContext, i420_frames, run
from tests.support.pictures import U8, luma_of, rgb_to_i420

# Hand-labelled: cheek to cheek, hairline to chin, in astronaut() pixels.
ASTRONAUT_FACE: Box = (178, 78, 270, 182)
PATCH = (slice(20, 230), slice(130, 320))  # the head, pasted into other pictures
WIDTH, HEIGHT = 640, 360


def background(name: str) -> U8:
    return np.asarray(cv2.resize(getattr(data, name)(), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA))


def composite(name: str, heads: list[tuple[float, int, int]]) -> tuple[U8, list[Box]]:
    """`name` at 640×360 with the astronaut's head pasted at (x, y), scaled; and the labelled face boxes."""
    picture = background(name).copy()
    head = data.astronaut()[PATCH]
    labels = []
    for scale, x, y in heads:
        scaled = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        picture[y : y + scaled.shape[0], x : x + scaled.shape[1]] = scaled
        x0, y0, x1, y1 = ASTRONAUT_FACE
        left, top = PATCH[1].start, PATCH[0].start
        labels.append(
            (
                round(x + (x0 - left) * scale),
                round(y + (y0 - top) * scale),
                round(x + (x1 - left) * scale),
                round(y + (y1 - top) * scale),
            )
        )
    return picture, labels


def iou(a: Box, b: Box) -> float:
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def blur_frames(
    spec: str | PrivacyBlur, frames: list[U8], width: int, height: int, fps: float = 30
) -> RecordingContext:
    processor = instantiate(parse_spec(spec)) if isinstance(spec, str) else spec
    ctx = run(processor, i420_frames(frames, width, height, fps))
    assert len(ctx.video) == len(frames)
    assert all((w, h, fmt) == (width, height, "I420") for _data, w, h, fmt in ctx.video)
    return ctx


def found_boxes(ctx: RecordingContext) -> list[Box]:
    faces = ctx.events("faces")
    return [tuple(box) for box in faces[-1]["boxes"]] if faces else []


SCENES = {
    "astronaut": None,
    "coffee, 1.0 at the left edge": ("coffee", [(1.0, 0, 0)]),
    "coffee, 0.5 small": ("coffee", [(0.5, 470, 200)]),
    "chelsea, 0.7": ("chelsea", [(0.7, 300, 100)]),
    "rocket, 1.4 large": ("rocket", [(1.4, 330, 20)]),
    "chelsea, two faces": ("chelsea", [(0.8, 20, 100), (0.6, 450, 60)]),
}


def scene(key: str) -> tuple[U8, list[Box]]:
    setup = SCENES[key]
    if setup is None:
        return data.astronaut(), [ASTRONAUT_FACE]
    return composite(*setup)


@pytest.mark.parametrize("key", list(SCENES))
def test_detected_boxes_match_the_labels(key: str) -> None:
    """Detection at 320 px wide (the default); boxes compared undilated, as the `faces` event reports them
    (measured IoU 0.67 to 0.73; the dilated regions' IoU is lower, 0.37 to 0.44, as they are 1.5 times
    wider and taller)."""
    picture, labels = scene(key)
    height, width = picture.shape[:2]
    ctx = blur_frames("privacy-blur", [rgb_to_i420(picture)], width, height)
    boxes = found_boxes(ctx)
    assert len(boxes) == len(labels)
    regions = [dilated(box, PrivacyBlurParams().dilate, width, height) for box in boxes]
    for label in labels:
        assert max(iou(label, box) for box in boxes) >= 0.5
        # The cascade's boxes stop above the chin; the dilated region covers the whole labelled face.
        assert any(
            r[0] <= label[0] and r[1] <= label[1] and label[2] <= r[2] and label[3] <= r[3] for r in regions
        )


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket"])
def test_no_face_in_pictures_without_one(name: str) -> None:
    ctx = blur_frames("privacy-blur", [rgb_to_i420(background(name))] * 3, WIDTH, HEIGHT)
    assert ctx.events("faces") == []
    assert all(
        np.array_equal(out, source)
        for (out, *_), source in zip(ctx.video, [rgb_to_i420(background(name))] * 3, strict=True)
    )


def changed_outside(source: U8, output: U8, width: int, height: int, regions: list[Box]) -> tuple[int, float]:
    """Samples changed outside `regions` (all three planes) and the fraction of luma changed inside them."""
    inside = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in regions:
        inside[y0:y1, x0:x1] = True
    chroma_inside = inside[::2, ::2]
    luma_changed = luma_of(output, width, height) != luma_of(source, width, height)
    chroma_changed = [
        output[start : start + chroma_inside.size].reshape(chroma_inside.shape)
        != source[start : start + chroma_inside.size].reshape(chroma_inside.shape)
        for start in (width * height, width * height + chroma_inside.size)
    ]
    outside = int(np.count_nonzero(luma_changed & ~inside))
    outside += sum(int(np.count_nonzero(changed & ~chroma_inside)) for changed in chroma_changed)
    return outside, float(luma_changed[inside].mean()) if inside.any() else 0.0


@pytest.mark.parametrize("mode", ["pixelate", "blur"])
@pytest.mark.parametrize("key", ["astronaut", "chelsea, two faces", "coffee, 1.0 at the left edge"])
def test_only_the_dilated_face_regions_change(key: str, mode: str) -> None:
    picture, _labels = scene(key)
    height, width = picture.shape[:2]
    source = rgb_to_i420(picture)
    ctx = blur_frames(f"privacy-blur(mode={mode})", [source] * 4, width, height)
    regions = [dilated(box, PrivacyBlurParams().dilate, width, height) for box in found_boxes(ctx)]
    assert regions
    for output, *_ in ctx.video:
        outside, inside_changed = changed_outside(source, output, width, height, regions)
        assert outside == 0
        assert inside_changed > 0.8


def faces_in(luma: U8, cascade_file: str) -> list[Box]:
    classifier = cv2.CascadeClassifier(cv2.data.haarcascades + cascade_file)
    found = classifier.detectMultiScale(luma, scaleFactor=1.05, minNeighbors=3)
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in found]


@pytest.mark.parametrize(
    "cascade_file", ["haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"]
)
@pytest.mark.parametrize("mode", ["pixelate", "blur"])
@pytest.mark.parametrize("key", list(SCENES))
def test_no_face_is_found_on_the_output(key: str, mode: str, cascade_file: str) -> None:
    """At full resolution and a finer scale step than the processor's (1.05), each labelled face found on
    the input is found nowhere near its label on the output. (With such permissive settings both cascades
    also find a few false faces elsewhere, on the input and the output alike.)"""
    picture, labels = scene(key)
    height, width = picture.shape[:2]
    source = rgb_to_i420(picture)
    ctx = blur_frames(f"privacy-blur(mode={mode})", [source], width, height)
    before = faces_in(luma_of(source, width, height), cascade_file)
    after = faces_in(luma_of(ctx.video[0][0], width, height), cascade_file)
    for label in labels:
        assert max(iou(label, box) for box in before) >= 0.5
        assert all(iou(label, box) == 0.0 for box in after), after


class ScriptedDetector:
    """Returns scripted boxes, each detection advancing a fake clock by its scripted duration."""

    def __init__(self, script: list[tuple[list[Box], float]]) -> None:
        self.script = list(script)
        self.now = 0.0
        self.calls: list[int] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, luma: U8) -> list[Box]:
        boxes, seconds = self.script.pop(0) if self.script else ([], 0.001)
        self.now += seconds
        self.calls.append(luma.shape[1])
        return boxes


FACE: Box = (100, 60, 180, 140)
FAST, SLOW = 0.005, 0.5


def scripted_run(
    params: dict[str, Any], script: list[tuple[list[Box], float]], frames: int = 10
) -> tuple[RecordingContext, list[U8]]:
    """`frames` frames of noise at 10 fps, 320×240, detections at 5/s (frames 0, 2, 4, ...)."""
    detector = ScriptedDetector(script)
    processor = PrivacyBlur(
        PrivacyBlurParams(detections_per_s=5, **params), detector=detector, clock=detector.clock
    )
    rng = np.random.default_rng(5)
    sources = [rng.integers(0, 256, 320 * 240 * 3 // 2, dtype=np.uint8) for _ in range(frames)]
    return blur_frames(processor, sources, 320, 240, fps=10), sources


def redacted(ctx: RecordingContext, sources: list[U8]) -> list[str]:
    """Per frame: "face" if only FACE's region changed, "all" if (nearly) everything did, "none"."""
    region = dilated(FACE, PrivacyBlurParams().dilate, 320, 240)
    states = []
    for (output, *_), source in zip(ctx.video, sources, strict=True):
        outside, inside_changed = changed_outside(source, output, 320, 240, [region])
        if outside == 0:
            states.append("face" if inside_changed > 0.8 else "none")
        else:
            states.append("all" if outside > 0.8 * 320 * 240 else "other")
    return states


@pytest.mark.parametrize(("fail_mode", "during_misses"), [("hold", ["face"] * 4), ("blur-all", ["all"] * 4)])
def test_a_missed_deadline_holds_or_redacts_everything_until_a_detection_in_time(
    fail_mode: str, during_misses: list[str]
) -> None:
    """Frame 0: a face, in time. Frames 2 and 4: detections past the 100 ms deadline that find nothing.
    Frame 6: in time, nothing; with hold_ms=0 the face's box goes at once."""
    script = [([FACE], FAST), ([], SLOW), ([], SLOW), ([], FAST), ([], FAST)]
    ctx, sources = scripted_run({"fail_mode": fail_mode, "hold_ms": 0}, script)
    assert redacted(ctx, sources) == ["face", "face", *during_misses, "none", "none", "none", "none"]
    [missed] = ctx.events("deadline_missed")
    assert missed == {
        "event": "deadline_missed",
        "detection_ms": 500.0,
        "deadline_ms": 100.0,
        "fail_mode": fail_mode,
        "time_us": 200_000,
    }
    assert ctx.events("deadline_recovered") == [
        {"event": "deadline_recovered", "missed": 2, "time_us": 600_000}
    ]
    assert [(e["count"], e["time_us"]) for e in ctx.events("faces")] == [(1, 0), (0, 600_000)]
    assert ctx.events("summary")[0]["deadline_misses"] == 2


def test_a_late_detection_s_faces_are_covered_too() -> None:
    other: Box = (200, 100, 260, 160)
    script = [([FACE], FAST), ([other], SLOW), ([], FAST)]
    ctx, sources = scripted_run({"hold_ms": 0}, script, frames=6)
    regions = [dilated(box, PrivacyBlurParams().dilate, 320, 240) for box in (FACE, other)]
    for (output, *_), source in zip(ctx.video[2:4], sources[2:4], strict=True):
        assert changed_outside(source, output, 320, 240, regions)[0] == 0
        assert changed_outside(source, output, 320, 240, regions[:1])[0] > 0


def test_a_lost_face_stays_covered_for_hold_ms() -> None:
    """Found at 0 s, lost from 0.2 s: covered while the last sighting is at most 300 ms old."""
    script = [([FACE], FAST), ([], FAST), ([], FAST)]
    ctx, sources = scripted_run({"hold_ms": 300}, script, frames=6)
    assert redacted(ctx, sources) == ["face", "face", "face", "face", "none", "none"]


def test_detection_runs_at_its_rate_and_width_and_boxes_are_held_between() -> None:
    detector = ScriptedDetector([([FACE], FAST)] * 5)
    processor = PrivacyBlur(PrivacyBlurParams(), detector=detector, clock=detector.clock)
    sources = [
        np.random.default_rng(seq).integers(0, 256, 320 * 240 * 3 // 2, dtype=np.uint8) for seq in range(30)
    ]
    ctx = blur_frames(processor, sources, 320, 240, fps=30)
    assert len(detector.calls) == 5  # 1 s of media at 5 detections/s
    assert redacted(ctx, sources) == ["face"] * 30


def test_a_tiny_deadline_with_the_real_cascade_redacts_everything() -> None:
    picture, _labels = scene("coffee, 0.5 small")
    source = rgb_to_i420(picture)
    ctx = blur_frames(
        "privacy-blur(detection_deadline_ms=0.001, fail_mode=blur-all)", [source] * 3, WIDTH, HEIGHT
    )
    assert len(ctx.events("deadline_missed")) == 1
    for output, *_ in ctx.video:
        changed = luma_of(output, WIDTH, HEIGHT) != luma_of(source, WIDTH, HEIGHT)
        assert changed.mean() > 0.8
