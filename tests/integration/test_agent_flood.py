"""A flooding processor in one room costs its own room's results, never another room's or the supervisor's
event loop: two rooms, two jobs on one agent server (real SDK participants on the dev server, the real
pool); the supervisor's loop lag is measured meanwhile (this test process is the supervisor)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
from livekit import rtc

from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from tests.support.agentkit import agent_settings, quiet_load, serving
from tests.support.flood import LagProbe
from tests.support.sdk import joined, publish_tone, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration

RESULT_RATE = 100.0  # results per second one stream may send its room (a burst of twice that)
RUN_S = 3.0


async def test_a_flooding_room_leaves_the_healthy_room_and_the_loop_alone(devserver: DevServer) -> None:
    settings = agent_settings(devserver, workers=2, result_rate=RESULT_RATE)
    server = AgentServer(settings, load_fnc=quiet_load)

    @server.rtc_session()
    async def job(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        flooding = ctx.job.room.name == "flood"
        processors = (
            "tests.support.procs:FloodResults(per_frame=200)" if flooding else "tests.support.procs:Count"
        )
        ctx.attach(processors, output=DataOutput(topic="out"))
        await ctx.shutdown_requested.wait()

    received: dict[str, list[dict[str, object]]] = {"flood": [], "healthy": []}
    arrived = asyncio.Event()

    def listener(room: str) -> object:
        def on_data(packet: rtc.DataPacket) -> None:
            if packet.topic == "out":
                received[room].append(json.loads(packet.data))
                arrived.set()

        return on_data

    async with (
        serving(server),
        joined(devserver, "flood-ear", "flood") as flood_ear,
        joined(devserver, "healthy-ear", "healthy") as healthy_ear,
        joined(devserver, "alice", "flood") as alice,
        joined(devserver, "bob", "healthy") as bob,
    ):
        flood_ear.on("data_received", listener("flood"))
        healthy_ear.on("data_received", listener("healthy"))
        _, flooding = await publish_tone(alice)
        _, healthy = await publish_tone(bob)
        try:
            # Past the bucket's initial burst (2 x rate), which reaches the outbox at once, and the second it
            # takes to drain from there: from now on the room gets what the rate lets through.
            await _until(
                lambda: len(received["healthy"]) > 10 and len(received["flood"]) > 3 * RESULT_RATE, arrived
            )
            await asyncio.sleep(1.0)
            counted_from = len(received["flood"])
            probe = LagProbe()
            started = time.monotonic()
            await asyncio.sleep(RUN_S)  # the measurement window itself, not a wait for an event
            lag = await probe.stop()
            elapsed = time.monotonic() - started
            flood_results = len(received["flood"]) - counted_from
        finally:
            await stop(flooding)
            await stop(healthy)
    seqs = sorted({int(m["data"]["seq"]) for m in received["healthy"] if m["topic"] == "count"})  # type: ignore[index]
    expected = seqs[-1] - seqs[0] + 1
    assert lag["p99_ms"] < 20.0, lag
    assert len(seqs) >= 0.99 * expected, (len(seqs), expected)  # the healthy room's results are all there
    # The flooding stream writes ~20,000 results a second; its room gets what the rate allows, no more.
    assert 0.8 * RESULT_RATE * elapsed < flood_results <= 1.1 * RESULT_RATE * elapsed, flood_results


async def _until(condition: Callable[[], bool], arrived: asyncio.Event) -> None:
    async def wait() -> None:
        while not condition():
            arrived.clear()
            await arrived.wait()

    await asyncio.wait_for(wait(), EVENT)
