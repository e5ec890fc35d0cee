"""The `loudness` processor live: a participant's tone through the dev server, the agent server and a
worker, its readings back to another participant as data messages."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from livekit import rtc

from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.loudness_refs import as_float, libebur128
from tests.support.sdk import SAMPLE_RATE, joined, publish_tone, stop, tone
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


class _Captured(Exception):
    pass


class CapturingSource:
    """Stands in for rtc.AudioSource to record what tests.support.sdk.tone sends."""

    def __init__(self, frames: int) -> None:
        self.samples: list[np.ndarray] = []
        self._frames = frames

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        self.samples.append(np.frombuffer(frame.data, dtype=np.int16).copy())
        if len(self.samples) == self._frames:
            raise _Captured


async def sent_tone(seconds: float) -> np.ndarray:
    """The first `seconds` of the tone publish_tone sends, as (samples, 1) int16."""
    source = CapturingSource(round(seconds * 100))
    with pytest.raises(_Captured):
        await tone(source)  # type: ignore[arg-type]
    return np.concatenate(source.samples)[:, None]


async def test_readings_of_a_live_tone_reach_the_room(devserver: DevServer, room_name: str) -> None:
    """The momentary loudness read live equals libebur128's on the tone sent, within 0.5 LU (the audio
    crosses an Opus encoder and decoder on the way)."""
    attached = Signal()
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def meter(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        # channels=1 names the layout the tone has (channels=0, "as the source", needs the platform side).
        spec = "loudness(channels=1, emit_ms=500)"
        ctx.attach(spec, participants=["alice"], output=DataOutput(topic="loudness"))
        attached.set(ctx)

    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    async with serving(server), joined(devserver, "bob", room_name) as bob:
        bob.on("data_received", lambda packet: queue.put_nowait(json.loads(packet.data)))
        async with joined(devserver, "alice", room_name) as alice:
            await attached.wait()
            _, feeding = await publish_tone(alice)
            try:
                momentary = await asyncio.wait_for(second_momentary(queue), EVENT)
            finally:
                await stop(feeding)
    expected = libebur128(as_float(await sent_tone(2.0)), SAMPLE_RATE).momentary[-1]
    assert momentary == pytest.approx(expected, abs=0.5)


async def second_momentary(queue: asyncio.Queue[dict[str, object]]) -> float:
    """The momentary loudness of the second reading that has one (the first window may hold the start)."""
    values: list[float] = []
    while len(values) < 2:
        message = await queue.get()
        data = message["data"]
        assert message["processor"] == "loudness" and isinstance(data, dict)
        if data.get("momentary_lufs") is not None:
            values.append(float(data["momentary_lufs"]))
    return values[-1]
