"""scene-cut against PySceneDetect's ContentDetector, run here on the very same pixels: the same cut
frames and the same per-frame scores, in content mode, luma mode, with edges, in both minimum-scene-length
modes; no cut on pans, sensor noise, dimming fades and dissolves."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from scenedetect import ContentDetector, FrameTimecode, StatsManager
from scenedetect.detector import FlashFilter
from scenedetect.scene_manager import Interpolation, compute_downscale_factor

from framepool.errors import ProcessorError
from framepool.processors import VideoFormat, instantiate, parse_spec, resolve
from tests.support import scenes
from tests.support.context import RecordingContext, run

HEIGHT, WIDTH, FPS = 180, 320, 30.0
COMPONENTS = ("delta_hue", "delta_sat", "delta_lum", "delta_edges")


def pyscenedetect(images: list[np.ndarray], **options: Any) -> tuple[list[int], list[dict[str, float]]]:
    """ContentDetector's cut frames and per-frame metrics (content_val and components, from its stats
    manager) for RGB images, given to it in BGR order as its decoders give them."""
    detector = ContentDetector(**options)
    stats = StatsManager()
    detector.stats_manager = stats
    cuts: list[int] = []
    metrics: list[dict[str, float]] = []
    for number, image in enumerate(images):
        timecode = FrameTimecode(number, FPS)
        cuts += [
            cut.frame_num for cut in detector.process_frame(timecode, np.ascontiguousarray(image[..., ::-1]))
        ]
        keys = ["content_val", *COMPONENTS]
        values = stats.get_metrics(timecode, keys)
        metrics.append({key: value or 0.0 for key, value in zip(keys, values, strict=True)})
    return cuts, metrics


def scene_cut(spec: str, images: list[np.ndarray]) -> RecordingContext:
    return run(instantiate(parse_spec(spec)), scenes.rgb_frames(images, FPS))


def cut_frames(ctx: RecordingContext) -> list[int]:
    return [event["frame"] for event in ctx.events("cut")]


def scores(ctx: RecordingContext) -> list[dict[str, Any]]:
    return [payload for _topic, payload in ctx.results if "event" not in payload]


def edited_clip() -> list[np.ndarray]:
    """Cuts at 20 and 40, a 3-frame scene (cuts at 60 and 63), a one-frame white flash at 90, and a cut
    at 100: cuts closer than 15 frames exercise the minimum scene length."""
    clip = scenes.cut_clip([20, 20, 20, 3, 37], HEIGHT, WIDTH)
    clip[90] = np.full_like(clip[90], 255)
    return clip + scenes.moving_scene(50, 20, HEIGHT, WIDTH)


CASES = [
    ("scene-cut(downscale=1)", {}),
    ("scene-cut(downscale=1, luma_only=true)", {"luma_only": True}),
    ("scene-cut(downscale=1, min_scene_len=5)", {"min_scene_len": 5}),
    ("scene-cut(downscale=1, min_scene_len=0)", {"min_scene_len": 0}),
    ("scene-cut(downscale=1, filter_mode=suppress)", {"filter_mode": FlashFilter.Mode.SUPPRESS}),
    ("scene-cut(downscale=1, threshold=40, min_scene_len=25)", {"threshold": 40.0, "min_scene_len": 25}),
    (
        "scene-cut(downscale=1, weight_edges=1, weight_hue=0.5)",
        {"weights": ContentDetector.Components(delta_hue=0.5, delta_edges=1.0)},
    ),
    (
        "scene-cut(downscale=1, weight_edges=2, kernel_size=3)",
        {"weights": ContentDetector.Components(delta_edges=2.0), "kernel_size": 3},
    ),
]


@pytest.mark.parametrize(("spec", "options"), CASES, ids=[spec for spec, _ in CASES])
def test_cuts_and_scores_equal_pyscenedetect(spec: str, options: dict[str, Any]) -> None:
    clip = edited_clip()
    expected_cuts, expected = pyscenedetect(clip, **options)
    ctx = scene_cut(spec.replace(")", ", emit_scores=true)"), clip)
    assert expected_cuts  # the clip exercises the detector
    assert cut_frames(ctx) == expected_cuts
    got = scores(ctx)
    assert [line["frame"] for line in got] == list(range(len(clip)))
    for line, reference in zip(got, expected, strict=True):
        assert line["score"] == pytest.approx(reference["content_val"], abs=1e-6)
        for key in COMPONENTS[:3]:
            assert line[key] == pytest.approx(reference[key], abs=1e-6)
        if "weight_edges" in spec:
            assert line["delta_edges"] == pytest.approx(reference["delta_edges"], abs=1e-6)
    worst = max(abs(line["score"] - ref["content_val"]) for line, ref in zip(got, expected, strict=True))
    print(f"{spec}: cuts {expected_cuts}, largest score difference {worst:.3g}")


def test_cut_events_carry_the_cut_frames_time_and_score_even_when_decided_late() -> None:
    """In merge mode the cut ending a merge is reported frames later, at the last frame above the
    threshold: the event names that frame, its time and its score, not the frame that decided it."""
    clip = edited_clip()
    ctx = scene_cut("scene-cut(downscale=1, emit_scores=true)", clip)
    by_frame = {line["frame"]: line for line in scores(ctx)}
    events = ctx.events("cut")
    assert events
    for event in events:
        assert event["time_us"] == round(event["frame"] * 1e6 / FPS)
        assert event["score"] == by_frame[event["frame"]]["score"] >= 27.0
    summary = ctx.events("summary")
    assert summary == [{"event": "summary", "frames": len(clip), "cuts": len(events)}]


def test_auto_downscale_matches_scene_managers_resize() -> None:
    """By default the processor resizes as PySceneDetect's SceneManager does (auto: larger side to 256 px,
    bilinear): the scores equal ContentDetector's on frames resized by SceneManager's own rule."""
    clip = edited_clip()
    factor = compute_downscale_factor(max(WIDTH, HEIGHT))
    size = (round(WIDTH / factor), round(HEIGHT / factor))
    assert size == (256, 144)
    resized = [cv2.resize(image, size, interpolation=Interpolation.LINEAR.value) for image in clip]
    expected_cuts, expected = pyscenedetect(resized)
    ctx = scene_cut("scene-cut(emit_scores=true)", clip)
    assert cut_frames(ctx) == expected_cuts and len(expected_cuts) >= 3
    got = [line["score"] for line in scores(ctx)]
    assert got == pytest.approx([reference["content_val"] for reference in expected], abs=1e-6)


QUIET_CLIPS = {
    "pan": lambda: scenes.pan(60, HEIGHT, WIDTH, step=4),
    "fast pan": lambda: scenes.pan(30, HEIGHT, WIDTH, step=12),
    "sensor noise": lambda: scenes.sensor_noise(30, HEIGHT, WIDTH, sigma=3.0),
    "fade to 5 %": lambda: fade(0.05, 60),
    "fade in from 5 %": lambda: fade(0.05, 60)[::-1],
    "dissolve": lambda: dissolve(30),
}


def fade(final: float, frames: int) -> list[np.ndarray]:
    still = scenes.scene_image(300, HEIGHT, WIDTH).astype(np.float32)
    return [np.rint(still * (1 - (1 - final) * i / (frames - 1))).astype(np.uint8) for i in range(frames)]


def dissolve(frames: int) -> list[np.ndarray]:
    first = scenes.scene_image(300, HEIGHT, WIDTH).astype(np.float32)
    second = scenes.scene_image(301, HEIGHT, WIDTH).astype(np.float32)
    return [np.rint(first + (second - first) * i / (frames - 1)).astype(np.uint8) for i in range(frames)]


@pytest.mark.parametrize("name", list(QUIET_CLIPS))
def test_no_cut_on_pans_noise_fades_and_dissolves(name: str) -> None:
    clip = QUIET_CLIPS[name]()
    expected_cuts, expected = pyscenedetect(clip)
    ctx = scene_cut("scene-cut(downscale=1, emit_scores=true)", clip)
    assert cut_frames(ctx) == expected_cuts == []
    assert [line["score"] for line in scores(ctx)] == pytest.approx(
        [m["content_val"] for m in expected], abs=1e-6
    )
    print(f"{name}: highest score {max(m['content_val'] for m in expected):.2f} (threshold 27)")


def test_a_fade_to_digital_black_cuts_on_the_black_frame_as_pyscenedetect_does() -> None:
    """Documented limit of the content score: at exact black (0, 0, 0) hue and saturation collapse to 0
    for every pixel at once, so the last frame of a fade to black scores above the threshold."""
    clip = fade(0.0, 60)
    expected_cuts, _ = pyscenedetect(clip)
    assert cut_frames(scene_cut("scene-cut(downscale=1)", clip)) == expected_cuts == [59]


def test_a_change_of_resolution_scores_zero_and_does_not_cut() -> None:
    small = scenes.moving_scene(7, 20, 90, 160)
    large = [cv2.resize(image, (WIDTH, HEIGHT)) for image in scenes.moving_scene(7, 20, 90, 160)]
    ctx = scene_cut("scene-cut(downscale=1, emit_scores=true, min_scene_len=0)", small + large)
    assert cut_frames(ctx) == []
    assert scores(ctx)[20]["score"] == 0.0


def test_format_and_parameter_errors() -> None:
    assert resolve(parse_spec("scene-cut")).fmt == VideoFormat(pixel_format="RGB24")
    assert resolve(parse_spec("scene-cut(max_width=640)")).fmt == VideoFormat(
        pixel_format="RGB24", max_width=640
    )
    for spec, fragment in [
        ("scene-cut(kernel_size=4)", "kernel_size"),
        ("scene-cut(weight_hue=0, weight_sat=0, weight_lum=0)", "weights"),
        ("scene-cut(filter_mode=drop)", "filter_mode"),
        ("scene-cut(threshold=-1)", "threshold"),
    ]:
        with pytest.raises(ProcessorError, match=fragment):
            resolve(parse_spec(spec))
