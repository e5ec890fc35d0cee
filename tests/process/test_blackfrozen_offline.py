"""black-frame and frozen-frame offline: `framepool process` on a file through the real worker pool gives
the runs FFmpeg's blackdetect and freezedetect find in the same decoded frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from framepool.processors import VideoFrame
from tests.support.lavfi import run_filter, seconds_to_us
from tests.support.timeouts import PROCESS

pytestmark = pytest.mark.process

WIDTH, HEIGHT, FPS = 160, 120, 10
# (kind, seconds): a black run longer than d = 1 s, one shorter, a still picture, and black to the end.
PLAN = [("moving", 1.0), ("black", 1.5), ("moving", 0.5), ("black", 0.5), ("moving", 0.5), ("still", 2.0)]
PLAN += [("moving", 0.5), ("black", 1.5)]


def picture(kind: str, index: int) -> npt.NDArray[np.uint8]:
    """An I420 picture: a diagonal gradient moving 5 levels a frame, the gradient held still, or black."""
    if kind == "black":
        luma = np.full((HEIGHT, WIDTH), 18, np.uint8)
    else:
        shift = 5 * index if kind == "moving" else 0
        luma = ((np.add.outer(np.arange(HEIGHT), np.arange(WIDTH)) + shift) % 200 + 30).astype(np.uint8)
    chroma = np.full(2 * (WIDTH // 2) * (HEIGHT // 2), 128, np.uint8)
    return np.concatenate((luma.ravel(), chroma))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plan as a lossless (FFV1) file, so the decoded frames are the pictures."""
    path = tmp_path_factory.mktemp("blackfrozen") / "clip.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        index = 0
        for kind, seconds in PLAN:
            for _ in range(round(seconds * FPS)):
                frame = av.VideoFrame.from_ndarray(picture(kind, index).reshape(-1, WIDTH), format="yuv420p")
                frame.pts, frame.time_base = index, Fraction(1, FPS)
                container.mux(stream.encode(frame))
                index += 1
        container.mux(stream.encode(None))
    return path


def decoded(path: Path) -> list[VideoFrame]:
    """The file's frames as the offline runner hands them over: I420, media time in µs."""
    with av.open(str(path)) as container:
        return [
            VideoFrame(
                np.ascontiguousarray(frame.to_ndarray(format="yuv420p")).reshape(-1),
                frame.width,
                frame.height,
                "I420",
                round(frame.time * 1_000_000),
                index,
                False,
            )
            for index, frame in enumerate(container.decode(video=0))
        ]


def process(path: Path, output: Path, processors: str) -> list[dict[str, Any]]:
    environ = {
        key: value for key, value in os.environ.items() if not key.startswith(("FRAMEPOOL_", "LIVEKIT_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "framepool.cli", "--workers", "1", "process", str(path), "-p", processors,
         "--output", str(output), "--quiet"],
        capture_output=True, text=True, env=environ, timeout=PROCESS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in output.read_text().splitlines()]


def test_offline_runs_equal_ffmpeg_on_the_decoded_frames(clip: Path, tmp_path: Path) -> None:
    lines = process(
        clip, tmp_path / "results.jsonl", "black-frame(black_min_duration=1),frozen-frame(duration=1)"
    )
    events: dict[str, list[dict[str, Any]]] = {"black-frame": [], "frozen-frame": []}
    for line in lines:
        events[line["topic"]].append(line["data"])
    frames = decoded(clip)

    logged = run_filter("blackdetect", "d=1", frames).lines(r"black_start:(\S+) black_end:(\S+)")
    ffmpeg_black = [(seconds_to_us(line[1]), seconds_to_us(line[2])) for line in logged]
    black_ends = [event for event in events["black-frame"] if event["event"] == "black_end"]
    assert [(event["black_start_us"], event["black_end_us"]) for event in black_ends] == ffmpeg_black
    assert ffmpeg_black == [(1_000_000, 2_500_000), (6_500_000, 7_900_000)]  # the 0.5 s run is too short
    assert [event["stream_ended"] for event in black_ends] == [False, True]  # the last run: at end of stream

    ffmpeg_freeze = [
        (pts, key.rsplit(".", 1)[1], seconds_to_us(value))
        for pts, metadata in run_filter("freezedetect", "d=1", frames).metadata
        for key, value in sorted(metadata.items())
        if key.endswith(("freeze_start", "freeze_end"))
    ]
    ours = [
        (event["frame_time_us"], event["event"], event[f"{event['event']}_us"])
        for event in events["frozen-frame"]
        if event["event"] in ("freeze_start", "freeze_end") and not event.get("stream_ended")
    ]
    assert sorted(ours) == sorted(ffmpeg_freeze)
    # The black runs are still pictures too; the gradient held 2 s is one more freeze.
    assert (6_000_000, "freeze_end", 6_000_000) in ours
    assert {event["event"] for event in events["black-frame"] + events["frozen-frame"]} >= {"summary"}
