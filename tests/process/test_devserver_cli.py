"""`python -m framepool.devserver` as a real process: banner, validate, prompt shutdown, one-line errors."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from livekit import rtc

from tests.support.devserver import make_token
from tests.support.sdk import next_event, publish_tone, stop
from tests.support.signals import signal_until_exit
from tests.support.timeouts import EVENT, PROCESS, PROMPT

pytestmark = pytest.mark.process


@dataclass
class RunningServer:
    process: asyncio.subprocess.Process
    url: str
    key: str
    secret: str
    log: Path

    @property
    def http_url(self) -> str:
        return "http" + self.url[2:]


async def _banner(process: asyncio.subprocess.Process) -> dict[str, str]:
    """The url / api key / api secret lines the server prints once it listens."""
    fields: dict[str, str] = {}
    assert process.stdout is not None
    async with asyncio.timeout(PROCESS):
        while len(fields) < 3:
            line = (await process.stdout.readline()).decode()
            assert line, "dev server exited before printing its banner"
            match = re.match(r"\s+(url|api key|api secret):\s+(\S+)", line)
            if match:
                fields[match.group(1)] = match.group(2)
    return fields


@pytest.fixture
async def cli_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    log_path = tmp_path / "devserver.log"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framepool.devserver",
        "--port",
        "0",
        "--keys",
        "clikey:clisecret-0123456789",
        stdout=asyncio.subprocess.PIPE,
        stderr=log_path.open("wb"),  # a file, not a pipe: nothing has to drain it
    )
    try:
        fields = await _banner(process)
        yield RunningServer(process, fields["url"], fields["api key"], fields["api secret"], log_path)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _token(server: RunningServer, identity: str, room: str) -> str:
    return make_token(identity, room, api_key=server.key, secret=server.secret)


async def test_banner_validate_and_exit_on_sigterm(cli_server: RunningServer) -> None:
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", cli_server.url) and cli_server.key == "clikey"
    async with aiohttp.ClientSession() as http:
        ok = await http.get(
            f"{cli_server.http_url}/rtc/validate",
            headers={"Authorization": f"Bearer {_token(cli_server, 'a', 'r')}"},
        )
        assert (ok.status, await ok.text()) == (200, "success")
        bad = await http.get(
            f"{cli_server.http_url}/rtc/validate", headers={"Authorization": f"Bearer {make_token('a', 'r')}"}
        )
        assert bad.status == 401

        # A publishing SDK participant, and a raw signal client that never answers the close handshake.
        sdk_room = rtc.Room()
        await asyncio.wait_for(sdk_room.connect(cli_server.url, _token(cli_server, "alice", "r")), EVENT)
        _, feeding = await publish_tone(sdk_room)
        silent = await http.ws_connect(
            f"{cli_server.url}/rtc?access_token={_token(cli_server, 'mute', 'r')}", autoclose=False
        )
        try:
            disconnected = next_event(sdk_room, "disconnected")
            cli_server.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(cli_server.process.wait(), PROCESS) == 0
            # The promise is the server's own bound on its shutdown, as the server measured it: a wall clock
            # around the process would also count a loaded machine's scheduling and interpreter teardown.
            done = re.search(r"shutdown: done in ([0-9.]+) s", cli_server.log.read_text())
            assert done is not None, cli_server.log.read_text()[-2000:]
            # Capped at 1.5 s by the server; without the cap the silent client would hold it 60 s (aiohttp).
            assert float(done.group(1)) < PROMPT, done.group(0)
            assert await asyncio.wait_for(disconnected, EVENT) == rtc.DisconnectReason.SERVER_SHUTDOWN
        finally:
            await stop(feeding)
            await silent.close()
            await sdk_room.disconnect()
    with pytest.raises(ProcessLookupError):
        os.kill(cli_server.process.pid, 0)


async def test_signals_during_shutdown_still_exit_cleanly(cli_server: RunningServer) -> None:
    """Ctrl-C hammered (and a SIGTERM from the service manager) while the server stops: still exit 0.

    Signals keep arriving until the process is gone, so some land after the orderly shutdown finished,
    where the loop's handlers used to be removed and the default disposition killed the process (-2).
    """
    status, sent = await signal_until_exit(cli_server.process)
    assert status == 0
    assert sent > 2


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framepool.devserver", *args], capture_output=True, text=True, timeout=PROCESS
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--keys", "no-secret-here"), "argument --keys: expected key:secret, got 'no-secret-here'"),
        (("--port", "http"), "argument --port: invalid int value: 'http'"),
    ],
)
def test_bad_arguments_are_one_line(args: tuple[str, ...], message: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"python -m framepool.devserver: {message}"]
    assert "Traceback" not in result.stdout + result.stderr


def test_occupied_port_is_one_line() -> None:
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        result = _run("--port", str(port))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"framepool devserver: cannot listen on 127.0.0.1:{port}: "
    )
    assert "address already in use" in lines[0] and "Traceback" not in result.stdout + result.stderr
