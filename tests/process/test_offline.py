"""The offline runner through the real worker pool: counts, outputs, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from framepool.demo.samples import write_test_sample
from framepool.offline.runner import OfflineJob, process_file
from framepool.processors import frame_bytes
from framepool.settings import Settings
from tests.support.shm import shm_segments
from tests.support.timeouts import PROCESS

pytestmark = pytest.mark.process

SECONDS = 2.0
FPS = 10


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("offline") / "sample.mp4"
    write_test_sample(path, SECONDS, width=160, height=120, fps=FPS)
    return path


def expected_counts(path: Path, frame_samples: int, rate: int = 48000) -> tuple[int, int]:
    """Video frames and audio frames (or windows) of `frame_samples` at `rate` the file decodes to, counted
    with PyAV."""
    with av.open(str(path)) as container:
        video = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        samples = sum(out.samples for frame in container.decode(audio=0) for out in resampler.resample(frame))
        samples += sum(out.samples for out in resampler.resample(None))
    return video, -(-samples // frame_samples)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value for key, value in os.environ.items() if not key.startswith(("FRAMEPOOL_", "LIVEKIT_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "framepool.cli", "--workers", "1", *args],
        capture_output=True, text=True, env=environ, timeout=PROCESS,
    )  # fmt: skip


async def test_every_decoded_frame_is_processed(sample: Path, tmp_path: Path) -> None:
    before = shm_segments()
    job = OfflineJob(
        sample,
        "audio-level(window_ms=100, frame_ms=20),video-motion(visualize=true, downscale=2)",
        output=tmp_path / "results.jsonl",
        output_media=tmp_path / "processed.mkv",
        summary=False,
    )
    report = await process_file(Settings(workers=1), job)
    video_frames, audio_frames = expected_counts(sample, 960)
    counts = {run.kind: (run.decoded, run.processed) for run in report.runs}
    assert counts == {"video": (video_frames, video_frames), "audio": (audio_frames, audio_frames)}
    assert report.lost() == {} and not report.failed()
    assert video_frames == SECONDS * FPS

    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(lines) == report.results
    # The schema of live data messages; the track is the input stream, the clock media time.
    assert set(lines[0]) == {"participant", "track", "processor", "topic", "frame_time_us", "seq", "data"}
    assert {line["participant"] for line in lines} == {""}
    levels = [line for line in lines if line["topic"] == "audio-level"]
    scores = [line for line in lines if line["topic"] == "video-motion" and "event" not in line["data"]]
    assert {line["track"][:5] for line in levels} == {"audio"}
    assert {line["track"][:5] for line in scores} == {"video"}
    assert len(levels) == expected_counts(sample, 4800)[1]  # one per 100 ms window, the last one partial
    assert all(line["data"]["rms_dbfs"] == pytest.approx(-23.01, abs=0.2) for line in levels[1:-1])
    assert len(scores) == video_frames
    frame_times = [line["frame_time_us"] for line in scores]
    assert frame_times == pytest.approx([i * 1_000_000 / FPS for i in range(video_frames)], abs=1000)

    with av.open(str(tmp_path / "processed.mkv")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (80, 60)
        assert sum(1 for _ in container.decode(video=0)) == video_frames
    assert report.media_frames == {"video1": video_frames} or report.media_frames == {"video0": video_frames}
    assert shm_segments() == before


async def test_processors_wanting_different_formats_each_get_their_own(sample: Path, tmp_path: Path) -> None:
    """Two audio formats and two pixel formats: each file stream is decoded once and converted per format."""
    job = OfflineJob(
        sample,
        "tests.support.procs:AudioProbe(sample_rate=16000, frame_ms=20),"
        "tests.support.procs:AudioProbe(frame_ms=100),"
        "tests.support.procs:VideoProbe(pixel_format=RGB24),tests.support.procs:VideoProbe",
        output=tmp_path / "results.jsonl",
        summary=False,
    )
    report = await process_file(Settings(workers=1), job)
    assert report.lost() == {} and not report.failed()
    runs = {run.stream_id: run for run in report.runs}
    [audio, video] = sorted({run.stream_id for run in report.runs if "." not in run.stream_id})
    assert sorted(runs) == [audio, f"{audio}.1", video, f"{video}.1"]
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    probes: dict[str, list[dict[str, Any]]] = {stream_id: [] for stream_id in runs}
    for line in lines:
        probes[line["track"]].append(line["data"])

    video_frames, _ = expected_counts(sample, 960)
    for stream_id, rate, frame_ms in [(audio, 16000, 20), (f"{audio}.1", 48000, 100)]:
        frame_samples = rate * frame_ms // 1000
        frames = expected_counts(sample, frame_samples, rate)[1]
        assert runs[stream_id].decoded == runs[stream_id].processed == len(probes[stream_id]) == frames
        for probe in probes[stream_id]:
            assert probe["wanted"] == {"sample_rate": rate, "frame_ms": frame_ms}
            assert probe["got"]["sample_rate"] == rate and probe["dtype"] == "int16"
        assert {probe["got"]["samples"] for probe in probes[stream_id][:-1]} == {frame_samples}
    for stream_id, pixel_format in [(video, "RGB24"), (f"{video}.1", "I420")]:  # in order of the specs
        assert runs[stream_id].decoded == runs[stream_id].processed == len(probes[stream_id]) == video_frames
        for probe in probes[stream_id]:
            assert probe["wanted"] == probe["got"] == pixel_format
            assert probe["bytes"] == frame_bytes(probe["width"], probe["height"], pixel_format)


def test_cli_writes_results_and_prints_the_summary(sample: Path, tmp_path: Path) -> None:
    result = run_cli("process", str(sample), "-p", "audio-level", "--output", str(tmp_path / "r.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    audio_line = next(
        line for line in result.stdout.splitlines() if "audio-level" in line and "decoded" in line
    )
    decoded = int(audio_line.split("decoded ")[1].split(",")[0])
    processed = int(audio_line.split("processed ")[1].split(",")[0])
    # audio-level's default window is 100 ms and it asks for frames as long as its window: 4800 samples.
    assert decoded == processed == expected_counts(sample, 4800)[1]
    assert (tmp_path / "r.jsonl").read_text().count("\n") >= SECONDS * 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "no-such-thing"], "framepool: unknown processor 'no-such-thing'"),
        (
            ["-p", "audio-level(window_ms=abc)"],
            "framepool: processor 'audio-level': bad parameter: window_ms",
        ),
        (["-p", "audio-level", "--output-media", "out.xyz"], "framepool: cannot write media as .xyz"),
    ],
)
def test_bad_processors_fail_with_one_line(sample: Path, args: list[str], message: str) -> None:
    result = run_cli("process", str(sample), *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_input_and_missing_stream_kind_fail_with_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 1000)
    audio_only = tmp_path / "audio.mp4"
    write_test_sample(audio_only, 0.5, video=False)
    for path, processors, message in [
        (junk, "audio-level", f"framepool: input {junk} cannot be read as media"),
        (tmp_path / "missing.mp4", "audio-level", "framepool: input"),
        (
            audio_only,
            "video-motion",
            f"framepool: video-motion needs video, but {audio_only} has no video stream",
        ),
    ]:
        result = run_cli("process", str(path), "-p", processors)
        assert result.returncode != 0
        assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_failing_processor_is_reported_and_fails_the_run(sample: Path) -> None:
    result = run_cli(
        "--log-level", "error", "process", str(sample), "-p", "tests.support.procs:Fail(fail_from=3)"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "event processor_disabled" in result.stdout
    line = next(line for line in result.stdout.splitlines() if "decoded" in line)
    assert "errors 5" in line  # processor_failure_limit consecutive failures, then disabled


def write_wav_without_channel_mask(path: Path, channels: int, seconds: float = 1.0) -> None:
    """A PCM WAV as PyAV writes it: no channel mask, so FFmpeg decodes it as "2 channels" (no order)."""
    rate = 48000
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.int16)
    block = np.repeat(tone[:, None], channels, axis=1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="stereo" if channels == 2 else "mono")
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout=stream.layout.name)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with av.open(str(path)) as container:
        assert {channel.name for channel in container.streams.audio[0].codec_context.layout.channels} == {
            "NONE"
        }


async def test_a_wav_without_channel_mask_converts_to_every_format(tmp_path: Path) -> None:
    """Processors wanting the source's stereo and mono of the same stereo file: each gets every frame (a frame
    of an unnamed layout, once converted to stereo, was refused by the mono converter: "Invalid argument")."""
    path = tmp_path / "nomask.wav"
    write_wav_without_channel_mask(path, 2)
    job = OfflineJob(
        path,
        "tests.support.procs:AudioProbe(frame_ms=100, channels=0),"
        "tests.support.procs:AudioProbe(frame_ms=100)",
        output=tmp_path / "results.jsonl",
        summary=False,
    )
    report = await process_file(Settings(workers=1), job)
    assert report.lost() == {} and not report.failed()
    assert sorted((run.decoded, run.processed) for run in report.runs) == [(10, 10), (10, 10)]
