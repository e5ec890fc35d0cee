"""`privacy-blur` and `snapshot` offline, through the real worker pool and the `framepool process` CLI: a
lossless clip of a face moving over a picture in, a processed track and JPEG files out."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from framepool.processors._faces import Box, dilated
from framepool.processors.privacy_blur import PrivacyBlurParams
from tests.support.pictures import U8
from tests.support.timeouts import PROCESS

pytestmark = pytest.mark.process

WIDTH, HEIGHT, FPS, FRAMES = 320, 240, 10, 20
HEAD_SCALE = 0.55
FACE_IN_HEAD = (48, 58, 140, 162)  # the hand-labelled face of astronaut() (tests/unit/test_privacy_blur.py)


def head_position(index: int) -> tuple[int, int]:
    return 30 + 5 * index, 50


def face_label(index: int) -> Box:
    x, y = head_position(index)
    x0, y0, x1, y1 = (round(v * HEAD_SCALE) for v in FACE_IN_HEAD)
    return x + x0, y + y0, x + x1, y + y1


def pictures() -> list[U8]:
    scene = np.asarray(cv2.resize(data.coffee(), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA))
    head = np.asarray(
        cv2.resize(
            data.astronaut()[20:230, 130:320],
            None,
            fx=HEAD_SCALE,
            fy=HEAD_SCALE,
            interpolation=cv2.INTER_AREA,
        )
    )
    frames = []
    for index in range(FRAMES):
        picture = scene.copy()
        x, y = head_position(index)
        picture[y : y + head.shape[0], x : x + head.shape[1]] = head
        frames.append(picture)
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[U8]]:
    """FFV1 (lossless) yuv420p, so the frames the pool decodes are exactly the luma kept here."""
    path = tmp_path_factory.mktemp("faces") / "faces.mkv"
    lumas = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index, picture in enumerate(pictures()):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            lumas.append(np.array(frame.to_ndarray()[:HEIGHT]))
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path, lumas


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value for key, value in os.environ.items() if not key.startswith(("FRAMEPOOL_", "LIVEKIT_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "framepool.cli", "--workers", "1", "process", *args],
        capture_output=True, text=True, env=environ, timeout=PROCESS,
    )  # fmt: skip


def result_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def iou(a: Box, b: Box) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_privacy_blur_writes_a_track_without_the_face(clip: tuple[Path, list[U8]], tmp_path: Path) -> None:
    path, lumas = clip
    results, media = tmp_path / "results.jsonl", tmp_path / "blurred.mkv"
    done = run_cli(str(path), "-p", "privacy-blur", "--output", str(results), "--output-media", str(media))
    assert done.returncode == 0, done.stderr
    lines = [line for line in result_lines(results) if line["topic"] == "privacy-blur"]
    faces = [line["data"] for line in lines if line["data"]["event"] == "faces"]
    assert faces[0]["count"] == 1 and faces[0]["time_us"] == 0
    assert iou(tuple(faces[0]["boxes"][0]), face_label(0)) >= 0.5
    [summary] = [line["data"] for line in lines if line["data"]["event"] == "summary"]
    assert summary["frames"] == FRAMES and summary["detections"] == FRAMES // 2  # 5/s at 10 fps

    with av.open(str(media)) as container:
        outputs = [
            frame.reformat(format="yuv420p").to_ndarray()[:HEIGHT] for frame in container.decode(video=0)
        ]
    assert len(outputs) == FRAMES and outputs[0].shape == (HEIGHT, WIDTH)
    classifier = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_alt2.xml")
    for index, (output, source) in enumerate(zip(outputs, lumas, strict=True)):
        found = classifier.detectMultiScale(output, scaleFactor=1.05, minNeighbors=3)
        assert all(iou((x, y, x + w, y + h), face_label(index)) == 0 for x, y, w, h in found)
        region = dilated(face_label(index), PrivacyBlurParams().dilate, WIDTH, HEIGHT)
        outside = np.ones((HEIGHT, WIDTH), bool)
        outside[region[1] : region[3], region[0] : region[2]] = False
        difference = np.abs(output.astype(np.int16) - source.astype(np.int16))
        assert difference[outside].mean() < 4.0  # MPEG-4 at 2 Mb/s; the regions never leak out
        assert difference[~outside].mean() > 10.0


def test_snapshot_writes_jpeg_files_named_in_the_results(clip: tuple[Path, list[U8]], tmp_path: Path) -> None:
    """The blob contract: offline, each blob is a file beside the results, named in a result line."""
    path, _lumas = clip
    results = tmp_path / "results.jsonl"
    done = run_cli(str(path), "-p", "snapshot(interval_ms=500, quality=90)", "--output", str(results))
    assert done.returncode == 0, done.stderr
    events = [line["data"] for line in result_lines(results) if line["data"].get("event") == "snapshot"]
    assert [event["time_us"] for event in events] == [0, 500_000, 1_000_000, 1_500_000]
    jpegs = sorted(tmp_path.rglob("*.jpg"))
    assert len(jpegs) == len(events)
    text = results.read_text()
    for jpeg in jpegs:
        assert jpeg.name in text
        with Image.open(io.BytesIO(jpeg.read_bytes())) as picture:
            assert (picture.format, picture.size) == ("JPEG", (WIDTH, HEIGHT))
    assert sorted(jpeg.stat().st_size for jpeg in jpegs) == sorted(event["bytes"] for event in events)
