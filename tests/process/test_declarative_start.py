"""`framepool start --config` tries each declarative agent's processors in a worker before registering: one
whose constructor raises is one line and exit 2 at start, not a broken job later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.shm import shm_segments
from tests.support.timeouts import PROCESS

pytestmark = pytest.mark.process


@pytest.mark.parametrize(
    ("processor", "error"),
    [
        ("tests.support.procs:RaiseInInit", "RuntimeError: weights.bin not found"),
        ("tests.support.procs:BrokenModelUser", "FileNotFoundError: no model at /nonexistent/model.onnx"),
    ],
)
def test_a_declarative_processor_failing_to_start_is_one_line_and_exit_2(
    tmp_path: Path, processor: str, error: str
) -> None:
    before = shm_segments()
    config = tmp_path / "framepool.toml"
    config.write_text(
        f'workers = 1\n\n[[agents]]\nagent_name = "meter"\naudio = ["audio-level", "{processor}"]\n'
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMEPOOL_", "LIVEKIT_"))}
    # Nothing listens there: the check must come before any connection is tried.
    environ.update(LIVEKIT_URL="ws://127.0.0.1:1", LIVEKIT_API_KEY="key", LIVEKIT_API_SECRET="secret")
    result = subprocess.run(
        [sys.executable, "-m", "framepool.cli", "start", "--config", str(config)],
        capture_output=True, text=True, env=environ, timeout=PROCESS,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"processor {processor} failed to start: {error}" in result.stderr
    assert "127.0.0.1:1" not in result.stderr  # never got as far as connecting
    assert shm_segments() == before
