"""scene-cut, sharpness and brightness offline through `framepool process` (the real worker pool), on a
video file, against the references run on the same file: PySceneDetect's SceneManager with its PyAV
backend (default settings: ContentDetector, auto downscale), OpenCV's Laplacian variance of each decoded
luma plane, FFmpeg's signalstats on each decoded frame."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from scenedetect import ContentDetector, SceneManager, StatsManager, open_video

from tests.support import scenes
from tests.support.timeouts import PROCESS

pytestmark = pytest.mark.process

FPS = 30
HEIGHT, WIDTH = 180, 320


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of 320x180 H.264: three scenes with camera drift, then a dark one."""
    path = tmp_path_factory.mktemp("scene") / "cuts.mp4"
    images = scenes.cut_clip([25, 25, 20], HEIGHT, WIDTH) + [
        image // 6 for image in scenes.moving_scene(9, 20, HEIGHT, WIDTH)
    ]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def run_process(path: Path, processors: str, output: Path) -> dict[str, list[dict[str, Any]]]:
    environ = {
        key: value for key, value in os.environ.items() if not key.startswith(("FRAMEPOOL_", "LIVEKIT_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "framepool.cli", "--workers", "1", "process", str(path), "-p", processors,
         "--output", str(output)],
        capture_output=True, text=True, env=environ, timeout=PROCESS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for line in output.read_text().splitlines():
        record = json.loads(line)
        by_topic.setdefault(record["topic"], []).append(record["data"])
    return by_topic


def decoded_lumas(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        # The Y plane as decoded (yuv420p's first rows), not a conversion to full-range gray.
        return [frame.to_ndarray()[:HEIGHT] for frame in container.decode(video=0)]


def scene_manager_reference(path: Path) -> tuple[list[int], list[float]]:
    video = open_video(str(path), backend="pyav")
    stats = StatsManager()
    manager = SceneManager(stats_manager=stats)
    manager.add_detector(ContentDetector())
    manager.detect_scenes(video)
    cuts = [start.frame_num for start, _end in manager.get_scene_list()[1:]]
    frames = video.frame_number
    scores = [stats.get_metrics(number, ["content_val"])[0] or 0.0 for number in range(frames)]
    return cuts, scores


def signalstats_reference(path: Path) -> list[dict[str, str]]:
    results = []
    with av.open(str(path)) as container:
        graph = av.filter.Graph()
        source = graph.add_buffer(width=WIDTH, height=HEIGHT, format="yuv420p", time_base=Fraction(1, FPS))
        stats, sink = graph.add("signalstats"), graph.add("buffersink")
        source.link_to(stats)
        stats.link_to(sink)
        graph.configure()
        for frame in container.decode(video=0):
            graph.push(frame)
            metadata = graph.pull().metadata
            results.append(
                {
                    key: metadata[f"lavfi.signalstats.{key}"]
                    for key in ("YMIN", "YLOW", "YAVG", "YHIGH", "YMAX")
                }
            )
    return results


def test_the_three_analysers_offline_equal_their_references(clip: Path, tmp_path: Path) -> None:
    results = run_process(
        clip, "scene-cut(emit_scores=true),sharpness,brightness(min_duration_ms=500)", tmp_path / "r.jsonl"
    )
    lumas = decoded_lumas(clip)

    expected_cuts, expected_scores = scene_manager_reference(clip)
    scene_lines = results["scene-cut"]
    assert (
        [line["frame"] for line in scene_lines if line.get("event") == "cut"] == expected_cuts == [25, 50, 70]
    )
    scores = [line["score"] for line in scene_lines if "event" not in line]
    assert scores == pytest.approx(expected_scores, abs=1e-6)
    assert scene_lines[-1] == {"event": "summary", "frames": len(lumas), "cuts": 3}

    sharpness = [line["sharpness"] for line in results["sharpness"] if "event" not in line]
    assert sharpness == pytest.approx([cv2.Laplacian(y, cv2.CV_64F).var() for y in lumas], rel=1e-6)

    figures = [line for line in results["brightness"] if "event" not in line]
    reference = signalstats_reference(clip)
    assert [{key: f"{line[key]:g}" for key in reference[0]} for line in figures] == reference
    assert (
        max(float(stats["YAVG"]) for stats in reference[70:])
        < 40
        < min(float(s["YAVG"]) for s in reference[:70])
    )
    dark = [event for event in results["brightness"] if event.get("event") == "too_dark_start"]
    assert [event["start_us"] for event in dark] == [round(70 * 1e6 / FPS)]
