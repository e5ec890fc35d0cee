"""SIGTERM drain of a real `framepool start` process: a running job finishes, then the daemon exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from livekit import rtc

from framepool.devserver.server import DevServer
from tests.conftest import API_KEY, API_SECRET
from tests.integration.sdk import joined

pytestmark = pytest.mark.integration

TIMEOUT = 60.0
ROOT = Path(__file__).resolve().parents[2]


async def start_daemon(devserver: DevServer, target: str, *extra: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "LIVEKIT_URL": devserver.url, "LIVEKIT_API_KEY": API_KEY, "LIVEKIT_API_SECRET": API_SECRET,
           "FRAMEPOOL_WORKERS": "1", "FRAMEPOOL_STATUS_INTERVAL": "0.5", "FRAMEPOOL_LOG_FORMAT": "json"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framepool.cli", "start", target, *extra, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def log_line(process: asyncio.subprocess.Process, fragment: str, seen: list[str]) -> dict[str, object]:
    """The next JSON log record of `process` whose message contains `fragment`."""
    assert process.stderr is not None
    while True:
        raw = await process.stderr.readline()
        if not raw:
            raise AssertionError(f"daemon exited before logging {fragment!r}:\n" + "".join(seen[-30:]))
        line = raw.decode(errors="replace")
        seen.append(line)
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if fragment in str(record.get("msg", "")):
            return dict(record)


def shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm"))


async def test_sigterm_lets_a_running_job_finish_then_exits_zero(devserver: DevServer, room_name: str) -> None:
    shm_before = shm_entries()
    process = await start_daemon(devserver, "tests.integration.agent_apps:drain_server")
    seen: list[str] = []
    try:
        await asyncio.wait_for(log_line(process, "registered 1 agent", seen), TIMEOUT)
        async with joined(devserver, "alice", room_name) as alice:
            statuses: asyncio.Queue[bytes] = asyncio.Queue()
            alice.on("data_received", lambda packet: statuses.put_nowait(packet.data))
            assert await asyncio.wait_for(statuses.get(), TIMEOUT) == b"running"
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(log_line(process, "draining", seen), TIMEOUT)
            assert process.returncode is None  # the job holds the daemon
            await alice.local_participant.publish_data(b"finish", reliable=True)
            assert await asyncio.wait_for(statuses.get(), TIMEOUT) == b"finished"
            await asyncio.wait_for(log_line(process, "job ended: JS_SUCCESS", seen), TIMEOUT)
        assert process.stderr is not None
        rest = await asyncio.wait_for(process.stderr.read(), TIMEOUT)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0, "".join(seen) + rest.decode()
        assert shm_entries() <= shm_before
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_start_without_credentials_is_one_line_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "FRAMEPOOL_"))}
    config = tmp_path / "agents.toml"
    config.write_text('[[agents]]\naudio = ["audio-level"]\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framepool.cli", "start", "--config", str(config), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "missing LiveKit credentials" in lines[0], err.decode()


async def test_start_without_agents_is_a_clear_error(tmp_path: Path, devserver: DevServer) -> None:
    config = tmp_path / "empty.toml"
    config.write_text(f'livekit_url = "{devserver.url}"\napi_key = "{API_KEY}"\napi_secret = "{API_SECRET}"\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framepool.cli", "start", "--config", str(config), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 2
    assert "no agents configured" in err.decode()


async def test_start_against_an_unreachable_server_exits_3(tmp_path: Path) -> None:
    config = tmp_path / "agents.toml"
    config.write_text('livekit_url = "ws://127.0.0.1:9"\napi_key = "k"\napi_secret = "s"\nmax_retry = 1\n'
                      'workers = 1\n[[agents]]\naudio = ["audio-level"]\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framepool.cli", "start", "--config", str(config), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 3, err.decode()
    assert "framepool: cannot reach LiveKit at ws://127.0.0.1:9" in err.decode()


del rtc
