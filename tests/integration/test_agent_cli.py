"""`framepool connect` (one job in a named room, no dispatch) and the declarative [[agents]] of the config."""

from __future__ import annotations

import asyncio
import json

import pytest
from livekit import rtc

from framepool.agent.cli import connect, load_server
from framepool.agent.job import JobContext
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from framepool.errors import ConfigError
from framepool.settings import AgentSpec
from tests.integration.agentkit import TIMEOUT, agent_settings, quiet_load, serving
from tests.integration.sdk import joined, publish_tone, stop

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
        status = await asyncio.wait_for(connect(server, room_name, agent_name="greeter"), TIMEOUT)
        assert await asyncio.wait_for(greetings.get(), TIMEOUT) == f"hello {room_name}".encode()
    assert status == 0


async def test_connect_reports_a_failing_entrypoint(devserver: DevServer, room_name: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def broken(ctx: JobContext) -> None:
        raise RuntimeError("no model")

    assert await asyncio.wait_for(connect(server, room_name), TIMEOUT) == 1
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
                message = await asyncio.wait_for(results.get(), TIMEOUT)
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


del rtc
