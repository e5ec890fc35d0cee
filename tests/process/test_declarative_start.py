"""`framepool start --config` tries each declarative agent's processors in a worker before registering: one
whose constructor raises is one line and exit 2 at start, not a broken job later."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.daemon import start_refused
from tests.support.shm import shm_segments

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
    result = start_refused(config)  # nothing listens at its LiveKit: refused before connecting
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"processor {processor} failed to start: {error}" in result.stderr
    assert "127.0.0.1:1" not in result.stderr  # never got as far as connecting
    assert shm_segments() == before
