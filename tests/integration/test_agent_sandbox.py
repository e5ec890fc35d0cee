"""A real `framepool start` with the LiveKit secret in its environment: none of its children (forkserver,
resource tracker, workers) has it, and with `sandbox = true` its workers run as `nobody` under seccomp
(issue 10, item 6). The agent uses the same pool as `framepool process`; this is the CLI's end of it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from framepool.devserver.server import DevServer
from tests.support.daemon import ROOT, assert_gone, exit_status
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.timeouts import PROCESS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.getuid() != 0, reason="the user switch needs root"),
]


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def _status(pid: int, field: str) -> str:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(line for line in lines if line.startswith(field + ":")).split(":", 1)[1].strip()


async def _registered(process: asyncio.subprocess.Process, seen: list[str]) -> None:
    assert process.stderr is not None
    while True:
        line = (await process.stderr.readline()).decode(errors="replace")
        if not line:
            raise AssertionError("daemon exited before registering:\n" + "".join(seen[-30:]))
        seen.append(line)
        if "registered 1 agent" in line:
            return


async def test_sandboxed_daemon_children_hold_no_secret(devserver: DevServer) -> None:
    env = {
        **os.environ,
        "LIVEKIT_URL": devserver.url,
        "LIVEKIT_API_KEY": API_KEY,
        "LIVEKIT_API_SECRET": API_SECRET,
        "FRAMEPOOL_WORKERS": "2",
        "FRAMEPOOL_SANDBOX": "true",
        "FRAMEPOOL_LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framepool.cli", "start", "tests.support.agent_apps:drain_server",
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    seen: list[str] = []
    try:
        await asyncio.wait_for(_registered(process, seen), PROCESS)
        children = psutil.Process(process.pid).children(recursive=True)
        for child in children:
            environ = _environ(child.pid)
            assert API_SECRET.encode() not in environ and b"LIVEKIT_" not in environ, child.cmdline()
        workers = [child.pid for child in children if _status(child.pid, "Uid").split()[0] == "65534"]
        assert len(workers) == 2
        for pid in workers:
            assert _status(pid, "Seccomp") == "2" and _status(pid, "NoNewPrivs") == "1"
        process.send_signal(signal.SIGTERM)
        status, log = await exit_status(process, seen)
        assert status == 0, log
        await assert_gone([child.pid for child in children])
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
