"""`framepool connect` (one job in a named room, no dispatch), `framepool dev` (its own dev server) and the
declarative [[agents]] of the config; the commands in-process and as real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys

import pytest
from livekit import rtc

from framepool.agent.cli import connect, load_server
from framepool.agent.job import JobContext
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from framepool.errors import ConfigError
from framepool.settings import AgentSpec
from tests.support.agentkit import agent_settings, quiet_load, serving
from tests.support.daemon import ROOT, assert_gone, exit_status, worker_pids
from tests.support.devserver import API_KEY, API_SECRET, make_token
from tests.support.sdk import joined, next_event, publish_tone, stop
from tests.support.shm import shm_segments
from tests.support.timeouts import EVENT, PROCESS

pytestmark = pytest.mark.integration


async def test_connect_runs_one_job_in_the_named_room(devserver: DevServer, room_name: str) -> None:
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session(agent_name="greeter")
    async def greet(ctx: JobContext) -> None:
        await ctx.connect()
        await ctx.wait_for_participant(identity="alice")
        await ctx.room.local_participant.publish_data(f"hello {ctx.job.room.name}", topic="greeting")
        ctx.shutdown("greeted")

    async with joined(devserver, "alice", room_name) as alice:
        greetings: asyncio.Queue[bytes] = asyncio.Queue()
        alice.on("data_received", lambda packet: greetings.put_nowait(packet.data))
        status = await asyncio.wait_for(connect(server, room_name, agent_name="greeter"), EVENT)
        assert await asyncio.wait_for(greetings.get(), EVENT) == f"hello {room_name}".encode()
    assert status == 0


async def test_connect_reports_a_failing_entrypoint(
    devserver: DevServer, room_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def broken(ctx: JobContext) -> None:
        raise RuntimeError("no model")

    assert await asyncio.wait_for(connect(server, room_name), EVENT) == 1
    assert "RuntimeError: no model" in capsys.readouterr().err


async def test_declarative_agent_publishes_results(devserver: DevServer, room_name: str) -> None:
    spec = AgentSpec(audio=["audio-level(window_ms=100)"], topic="levels")
    server = load_server(None, agent_settings(devserver, agents=[spec]))
    server.load_fnc = quiet_load
    async with serving(server), joined(devserver, "bob", room_name) as bob:
        results: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        bob.on("data_received", lambda p: p.topic == "levels" and results.put_nowait(json.loads(p.data)))
        async with joined(devserver, "alice", room_name) as alice:
            _, feeding = await publish_tone(alice)
            try:
                message = await asyncio.wait_for(results.get(), EVENT)
            finally:
                await stop(feeding)
    assert (message["participant"], message["processor"]) == ("alice", "audio-level")


def test_declarative_agent_with_a_bad_processor_fails_at_start(devserver: DevServer) -> None:
    spec = AgentSpec(agent_name="x", audio=["audio-level(window_ms=abc)"])
    with pytest.raises(ConfigError, match=r"agents\[0\] \(x\) audio: .*window_ms"):
        load_server(None, agent_settings(devserver, agents=[spec]))


def test_bad_server_target_is_one_line(devserver: DevServer) -> None:
    with pytest.raises(ConfigError, match="expected module:attribute"):
        load_server("nocolon", agent_settings(devserver))
    with pytest.raises(ConfigError, match="is not an AgentServer"):
        load_server("json:dumps", agent_settings(devserver))


# -- the commands as subprocesses -------------------------------------------------------------------------


def cli_env(**values: str) -> dict[str, str]:
    """The environment without any LiveKit or framepool settings of the caller, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "FRAMEPOOL_"))}
    return {**env, "FRAMEPOOL_WORKERS": "1", **values}


async def framepool(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framepool.cli",
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stderr_line(process: asyncio.subprocess.Process, pattern: str, seen: list[str]) -> re.Match[str]:
    """The match of `pattern` in the next stderr line of `process` that has one."""
    assert process.stderr is not None
    while True:
        raw = await asyncio.wait_for(process.stderr.readline(), PROCESS)
        if not raw:
            raise AssertionError(f"exited before printing {pattern!r}:\n" + "".join(seen[-30:]))
        seen.append(raw.decode(errors="replace"))
        if match := re.search(pattern, seen[-1]):
            return match


def assert_text_logs(logged: str) -> None:
    """dev and connect log text; their workers too, though stderr is a pipe (where "auto" means JSON)."""
    assert "worker ready" in logged
    json_lines = [line for line in logged.splitlines() if line.startswith("{")]
    assert not json_lines, json_lines


async def statuses_of(room: rtc.Room) -> asyncio.Queue[bytes]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    room.on("data_received", lambda packet: packet.topic == "status" and queue.put_nowait(packet.data))
    return queue


async def test_dev_starts_its_own_server_takes_a_job_and_exits_0_on_sigterm(room_name: str) -> None:
    shm_before = shm_segments()
    process = await framepool(
        "dev", "--dev-port", "0", "tests.support.agent_apps:drain_server", env=cli_env()
    )
    seen: list[str] = []
    try:
        url = (await stderr_line(process, r"dev server at (ws://\S+) \(LIVEKIT_API_KEY=devkey", seen)).group(
            1
        )
        await stderr_line(process, r"registered 1 agent", seen)
        pids = worker_pids(process)
        alice = rtc.Room()
        await asyncio.wait_for(alice.connect(url, make_token("alice", room_name)), EVENT)
        try:
            statuses = await statuses_of(alice)
            assert await asyncio.wait_for(statuses.get(), EVENT) == b"running"
            await alice.local_participant.publish_data(b"finish", reliable=True)
            assert await asyncio.wait_for(statuses.get(), EVENT) == b"finished"
            await stderr_line(process, r"job ended: JS_SUCCESS", seen)
        finally:
            await alice.disconnect()
        process.send_signal(signal.SIGTERM)
        status, logged = await exit_status(process, seen)
        assert status == 0, logged
        assert "Traceback" not in logged
        assert_text_logs(logged)
        await assert_gone(pids)
        assert shm_segments() <= shm_before
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_connect_joins_the_named_room_and_exits_0_on_sigterm(
    devserver: DevServer, room_name: str
) -> None:
    shm_before = shm_segments()
    env = cli_env(LIVEKIT_URL=devserver.url, LIVEKIT_API_KEY=API_KEY, LIVEKIT_API_SECRET=API_SECRET)
    async with joined(devserver, "alice", room_name) as alice:
        statuses = await statuses_of(alice)
        agent_left = next_event(alice, "participant_disconnected")
        process = await framepool(
            "connect", "--room", room_name, "tests.support.agent_apps:endless_server", env=env
        )
        seen: list[str] = []
        try:
            assert await asyncio.wait_for(statuses.get(), EVENT) == b"running"
            pids = worker_pids(process)
            process.send_signal(signal.SIGTERM)
            assert (await asyncio.wait_for(agent_left, EVENT)).identity.startswith("agent-AJ_local_")
            status, logged = await exit_status(process, seen)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert status == 0, logged
    assert "job shutting down: interrupted" in logged
    assert_text_logs(logged)
    await assert_gone(pids)
    assert shm_segments() <= shm_before


async def test_connect_with_bad_credentials_is_one_line(devserver: DevServer, room_name: str) -> None:
    env = cli_env(LIVEKIT_URL=devserver.url, LIVEKIT_API_KEY=API_KEY, LIVEKIT_API_SECRET="not-the-secret")
    process = await framepool(
        "connect", "--room", room_name, "tests.support.agent_apps:endless_server", env=env
    )
    _, err = await asyncio.wait_for(process.communicate(), PROCESS)
    lines = err.decode().strip().splitlines()
    assert process.returncode == 3, err.decode()
    assert len(lines) == 1 and lines[0].startswith(
        f"framepool: LiveKit at {devserver.url} refused to create room"
    ), lines
