"""`framepool process` through the real CLI: stop signals (an orderly stop, the summary so far, 128 +
signal, nothing left behind) and the failures that must be one line, not a traceback (process tier)."""

from __future__ import annotations

import asyncio
import fractions
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import psutil
import pytest

from framepool.demo.samples import write_test_sample
from tests.support.pool import wait_exited
from tests.support.shm import shm_segments
from tests.support.timeouts import EVENT, ORPHANS_GONE, PROCESS

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lifetime") / "sample.mp4"
    write_test_sample(path, 2.0, width=160, height=120, fps=10)
    return path


def cli_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(("FRAMEPOOL_", "LIVEKIT_"))}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framepool.cli", "--workers", "1", *args],
        capture_output=True, text=True, env=cli_environment(), timeout=PROCESS,
    )  # fmt: skip


async def start_hung_run(sample: Path, shutdown_timeout: float) -> asyncio.subprocess.Process:
    """`framepool process` whose one processor hangs on its first frame; returns once it hangs (its
    result, written to stdout by `-o -`, says so)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framepool.cli", "--workers", "1", "--log-level", "warning",
        "--worker-shutdown-timeout", str(shutdown_timeout),
        "process", str(sample), "-p", "tests.support.procs:Hang", "-o", "-",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_environment(),
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), PROCESS)
    assert json.loads(line)["topic"] == "hanging", line
    return process


def family_of(pid: int) -> list[int]:
    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_stop_signal_while_a_processor_hangs_stops_in_order(
    sample: Path, signum: signal.Signals, status: int
) -> None:
    before = shm_segments()
    process = await start_hung_run(sample, shutdown_timeout=0.5)
    family = family_of(process.pid)
    assert len(family) >= 3  # the worker, the forkserver, the resource tracker
    process.send_signal(signum)
    stdout, stderr = await asyncio.wait_for(process.communicate(), EVENT)
    ended = time.monotonic()
    text = stderr.decode()
    assert process.returncode == status, text
    assert "Traceback" not in text
    assert "framepool: interrupted after " in text and " frames" in text
    assert "audio1 (tests.support.procs:Hang): decoded " in text  # the summary so far, on stderr (-o -)
    assert b"decoded" not in stdout  # stdout holds the results only
    assert (
        await asyncio.to_thread(wait_exited, family, max(0.0, ended + ORPHANS_GONE - time.monotonic())) == []
    )
    assert shm_segments() == before


async def test_a_second_signal_kills_the_workers_at_once(sample: Path) -> None:
    process = await start_hung_run(sample, shutdown_timeout=3600.0)  # only the quick path ends it soon
    family = family_of(process.pid)
    assert process.stderr is not None
    process.send_signal(signal.SIGTERM)
    while b"stop requested" not in (line := await asyncio.wait_for(process.stderr.readline(), EVENT)):
        assert line, "stderr ended before the stop was logged"
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), EVENT)
    assert process.returncode == 143, stderr.decode()
    assert b"Traceback" not in stderr and b"interrupted after" in stderr
    assert await asyncio.to_thread(wait_exited, family, ORPHANS_GONE) == []


@pytest.mark.parametrize(
    ("processor", "message"),
    [
        (
            "tests.support.procs:RaiseInInit",
            "framepool: processor tests.support.procs:RaiseInInit (audio1) failed to start: "
            "RuntimeError: weights.bin not found",
        ),
        (
            "tests.support.procs:BrokenModelUser",
            "framepool: processor tests.support.procs:BrokenModelUser (audio1) failed to start: "
            "FileNotFoundError: no model at /nonexistent/model.onnx",
        ),
    ],
)
def test_a_processor_failing_to_start_is_one_line_and_exit_2(
    sample: Path, processor: str, message: str
) -> None:
    result = run_cli("--log-level", "error", "process", str(sample), "-p", processor)
    assert result.returncode == 2, result.stderr
    assert result.stderr == message + "\n"


@pytest.mark.parametrize("flag", ["--output", "--output-media"])
def test_an_output_into_a_missing_directory_is_one_line_and_exit_2(
    sample: Path, tmp_path: Path, flag: str
) -> None:
    target = tmp_path / "missing" / "out.mkv"
    result = run_cli("process", str(sample), "-p", "audio-level", flag, str(target))
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"framepool: {flag} {target}: directory {target.parent} does not exist\n"


def test_output_dash_writes_the_results_to_stdout(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a file named '-' would appear here
    result = run_cli("--log-level", "error", "process", str(sample), "-p", "audio-level", "-o", "-")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 21 and {line["topic"] for line in lines} == {"audio-level"}
    assert "audio1 (audio-level): decoded 21, processed 21" in result.stderr  # the summary
    assert "results: 21 written to stdout" in result.stderr
    assert not (tmp_path / "-").exists()


def write_irregular_video(path: Path, frames: int = 40) -> fractions.Fraction:
    """H.264 in MP4 with a 1/90000 time base and every other frame 1 tick late: FFmpeg reports an average
    frame rate of 3600000/120019. Returns that rate."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 90000)
        pts = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 5, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, stream.time_base
            pts += 3000 + i % 2
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
    assert rate is not None
    return fractions.Fraction(rate)


def test_media_output_of_an_input_with_an_irregular_frame_rate(tmp_path: Path) -> None:
    source, target = tmp_path / "irregular.mp4", tmp_path / "processed.mp4"
    rate = write_irregular_video(source)
    assert rate.numerator > 65535  # 1/rate as a time base: beyond MPEG-4's limit
    result = run_cli(
        "--log-level", "warning", "process", str(source), "-p", "video-motion(visualize=true)",
        "--output-media", str(target),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "processed media: " in result.stdout and "(video0: 40 frames)" in result.stdout
    with av.open(str(target)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 40
