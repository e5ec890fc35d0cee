"""`framepool publish`, `listen`, `dispatch` and `--version` on the command line: usage errors and the
errors a user meets before any room is joined are one line with their exit status, never a traceback and
never the secret (test process; each command a real subprocess)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from framepool import __version__
from tests.support.timeouts import PROCESS

SECRET = "s3cr3t-never-printed"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMEPOOL_", "LIVEKIT_"))}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "framepool.cli", *args],
        capture_output=True, text=True, env=environ, timeout=PROCESS,
    )  # fmt: skip


def assert_one_line(result: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert text in result.stderr
    assert SECRET not in result.stderr


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing accepts on, held for the test (bound, never listening)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


def test_version() -> None:
    result = run_cli("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"framepool {__version__}\n", "")


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["publish"], "framepool publish: the following arguments are required: FILE|testsrc, --room"),
        (["publish", "testsrc"], "the following arguments are required: --room"),
        (["listen"], "framepool listen: the following arguments are required: --room"),
        (["listen", "--room", "r", "--frame-every", "0"], "expected a positive integer, got '0'"),
        (["listen", "--room", "r", "--print-every", "soon"], "invalid float value: 'soon'"),
        (["dispatch", "--room", "r"], "framepool dispatch: the following arguments are required: --agent"),
        (["publish", "testsrc", "--room", "r", "--bogus"], "unrecognized arguments: --bogus"),
        (["publsh"], "invalid choice: 'publsh'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], text: str) -> None:
    assert_one_line(run_cli(*args), 2, text)


def test_missing_and_unreadable_files_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "talk.mp4"
    assert_one_line(run_cli("publish", str(missing), "--room", "r"), 1, f"{missing}: no such file")
    not_media = tmp_path / "notes.mp4"
    not_media.write_text("not a media file\n")
    assert_one_line(run_cli("publish", str(not_media), "--room", "r"), 1, f"{not_media}: cannot open")


def test_save_directory_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "out"
    assert_one_line(run_cli("listen", "--room", "r", "--save", str(missing)), 2, "no such directory")


def test_a_remote_url_needs_keys_and_names_what_is_missing() -> None:
    result = run_cli("dispatch", "--agent", "a", "--room", "r", env={"LIVEKIT_URL": "wss://example.com"})
    assert_one_line(result, 2, "missing credentials for wss://example.com: set LIVEKIT_API_KEY and LIVEKIT")


@pytest.mark.parametrize("command", [["dispatch", "--agent", "a"], ["publish", "testsrc"], ["listen"]])
def test_unreachable_server_is_one_line_exit_3(command: list[str], closed_port: int) -> None:
    env = {
        "LIVEKIT_URL": f"ws://127.0.0.1:{closed_port}",
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": SECRET,
    }
    result = run_cli(*command, "--room", "r", env=env)
    assert_one_line(result, 3, f"127.0.0.1:{closed_port}")


def test_a_file_with_nothing_to_publish_is_one_line(tmp_path: Path) -> None:
    subtitles = tmp_path / "words.srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    result = run_cli("publish", str(subtitles), "--room", "r")
    assert_one_line(result, 1, f"{subtitles}: no audio or video stream to publish")
