"""systemd readiness: a real `framepool start` sends READY=1 once its agents are registered and STOPPING=1
on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from framepool.devserver.server import DevServer
from tests.support.daemon import ROOT
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.timeouts import PROCESS

pytestmark = pytest.mark.integration


async def next_notification(sock: socket.socket, key: str) -> dict[str, str]:
    """The next message that carries `key` (STATUS= lines come first: the daemon reports its start-up)."""
    while True:
        raw = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), PROCESS)
        message = dict(line.split("=", 1) for line in raw.decode().splitlines())
        if key in message:
            return message


async def test_ready_after_registration_then_stopping_on_sigterm(
    tmp_path: Path, devserver: DevServer
) -> None:
    config = tmp_path / "agents.toml"
    config.write_text('workers = 1\n[[agents]]\nagent_name = "notify-test"\naudio = ["audio-level"]\n')
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.setblocking(False)
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(tmp_path / "notify"),
            "LIVEKIT_URL": devserver.url,
            "LIVEKIT_API_KEY": API_KEY,
            "LIVEKIT_API_SECRET": API_SECRET,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "framepool.cli",
            "start",
            "--config",
            str(config),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            ready = await next_notification(sock, "READY")
            assert ready["READY"] == "1"
            assert ready["MAINPID"] == str(process.pid)
            assert "1 agent(s) registered" in ready["STATUS"]
            process.send_signal(signal.SIGTERM)
            stopping = await next_notification(sock, "STOPPING")
            assert stopping["STOPPING"] == "1"
            _, err = await asyncio.wait_for(process.communicate(), PROCESS)
            assert process.returncode == 0, err.decode()[-2000:]
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
