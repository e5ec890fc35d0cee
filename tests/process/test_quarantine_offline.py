"""`framepool process` with a processor that crashes or stalls its worker on every frame (issue 9): it is
quarantined after `quarantine_incidents` incidents with a clear line, the summary says so, and the rest of
the file is still processed (the video stream on the same worker loses nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from framepool.demo.samples import write_test_sample
from tests.support.shm import shm_segments
from tests.support.timeouts import PROCESS

pytestmark = pytest.mark.process


@pytest.mark.parametrize(
    "bad",
    ["ExitCrash", "Segfault", "Stall(seconds=5)"],
    ids=["os._exit", "SIGSEGV", "slow-5s-per-frame"],
)
def test_bad_processor_is_quarantined_offline_and_the_rest_of_the_file_processed(
    tmp_path: Path, bad: str
) -> None:
    before = shm_segments()
    name = bad.split("(")[0]
    sample = tmp_path / "sample.mp4"
    write_test_sample(sample, 2.0, width=160, height=120, fps=10)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMEPOOL_", "LIVEKIT_"))}
    environ["FRAMEPOOL_QUARANTINE_INCIDENTS"] = "2"
    processors = f"tests.support.procs:{bad},tests.support.procs:Count,video-motion"
    result = subprocess.run(
        [sys.executable, "-m", "framepool.cli", "--workers", "1", "process", str(sample), "-p", processors],
        capture_output=True, text=True, env=environ, timeout=PROCESS,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"processor tests.support.procs:{name} quarantined on stream audio1" in result.stderr
    quarantined = [line for line in result.stdout.splitlines() if "QUARANTINED" in line]
    assert len(quarantined) == 1 and f"tests.support.procs:{name}" in quarantined[0], result.stdout
    assert "2 incidents" in quarantined[0]
    video = next(line for line in result.stdout.splitlines() if line.startswith("  video0"))
    decoded = int(video.split("decoded ")[1].split(",")[0])
    assert decoded == 20 and f"processed {decoded}," in video and "lost 0" in video, result.stdout
    audio = next(line for line in result.stdout.splitlines() if line.startswith("  audio1"))
    assert "processed 0," not in audio  # Count went on with the frames after the quarantine
    assert shm_segments() == before
