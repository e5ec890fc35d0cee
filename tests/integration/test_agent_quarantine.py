"""A processor that keeps killing its worker (exits, segfaults, stalls, leaks) is quarantined in a live job:
the room hears it, the job and the healthy processor on the same track go on (the real SDK against the dev
server)."""

from __future__ import annotations

import asyncio
import json

import pytest
from livekit import rtc

from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from framepool.settings import Settings
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.sdk import joined, publish_tone, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


def analysis_server(settings: Settings, bad: str, attached: Signal) -> AgentServer:
    """An agent attaching `bad` and a healthy counter to alice's tracks, results on topic "analysis"."""
    server = AgentServer(settings, load_fnc=quiet_load)

    @server.rtc_session()
    async def entry(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        processors = [bad, "tests.support.procs:Count"]
        ctx.attach(processors, participants=["alice"], output=DataOutput(topic="analysis"))
        attached.set(ctx)

    return server


def analysis_messages(room: rtc.Room) -> asyncio.Queue[dict[str, object]]:
    messages: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    def on_data(packet: rtc.DataPacket) -> None:
        if packet.topic == "analysis":
            messages.put_nowait(json.loads(packet.data))

    room.on("data_received", on_data)
    return messages


@pytest.mark.parametrize(
    ("bad", "overrides"),
    [
        ("ExitCrash", {}),
        ("Segfault", {}),
        ("Stall(seconds=5)", {}),
        ("Leak(mb_per_frame=5)", {"worker_memory_limit_mb": 400, "ping_interval": 0.2}),
    ],
    ids=["os._exit", "SIGSEGV", "slow-5s-per-frame", "leak"],
)
async def test_a_bad_processor_is_quarantined_and_the_room_hears_it(
    devserver: DevServer, room_name: str, bad: str, overrides: dict[str, object]
) -> None:
    attached = Signal()
    settings = agent_settings(devserver, quarantine_incidents=2, restart_backoff=0.01, **overrides)
    server = analysis_server(settings, f"tests.support.procs:{bad}", attached)
    name = f"tests.support.procs:{bad.split('(')[0]}"
    async with serving(server), joined(devserver, "bob", room_name) as bob:
        messages = analysis_messages(bob)
        async with joined(devserver, "alice", room_name) as alice:
            ctx: JobContext = await attached.wait()
            _, feeding = await publish_tone(alice)
            try:
                quarantined = await _next(messages, lambda m: m.get("event") == "processor_quarantined")
                # The healthy processor on the same track keeps producing results afterwards.
                while not messages.empty():
                    messages.get_nowait()
                count = await _next(messages, lambda m: m.get("processor") == "tests.support.procs:Count")
            finally:
                await stop(feeding)
            assert ctx.job.id in server.jobs  # the job goes on
            stats = ctx.session.stats()
            assert stats["processors_quarantined"] == 1 and stats["incidents"] >= 2
    assert quarantined["processor"] == name
    assert quarantined["participant"] == "alice" and str(quarantined["track"]).startswith("TR_")
    assert quarantined["reason"]
    assert count["participant"] == "alice"
    assert server.pool is not None and not server.pool.halted.is_set()


async def _next(messages: asyncio.Queue[dict[str, object]], wanted: object) -> dict[str, object]:
    async def take() -> dict[str, object]:
        while True:
            message = await messages.get()
            if wanted(message):  # type: ignore[operator]
                return message

    return await asyncio.wait_for(take(), EVENT)


async def test_a_processor_failing_to_start_is_disabled_and_its_neighbour_runs(
    devserver: DevServer, room_name: str
) -> None:
    """In a live job a constructor that raises costs only that processor: the room hears
    processor_disabled with the error, the other processor on the same track runs."""
    attached = Signal()
    server = analysis_server(agent_settings(devserver), "tests.support.procs:RaiseInInit", attached)
    async with serving(server), joined(devserver, "bob", room_name) as bob:
        messages = analysis_messages(bob)
        async with joined(devserver, "alice", room_name) as alice:
            await attached.wait()
            _, feeding = await publish_tone(alice)
            try:
                disabled = await _next(messages, lambda m: m.get("event") == "processor_disabled")
                count = await _next(messages, lambda m: m.get("processor") == "tests.support.procs:Count")
            finally:
                await stop(feeding)
    assert disabled["processor"] == "tests.support.procs:RaiseInInit"
    assert "failed to start: RuntimeError: weights.bin not found" in str(disabled["reason"])
    assert count["participant"] == "alice"
    assert server.pool is not None and server.pool.stats().restarts == 0
