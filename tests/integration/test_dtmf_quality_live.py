"""`dtmf` and `audio-quality` live: digits published into a room, and quality windows, reach another
participant. (Exact zeros and rail values do not survive the Opus codec, so dropouts and clipping are
counted exactly in the unit and offline tests, not here.)"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import numpy.typing as npt
import pytest
from livekit import rtc

from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.dtmf_signals import Tone, sequence
from tests.support.sdk import SAMPLE_RATE, joined, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration

SENT = "159#"


async def play(source: rtc.AudioSource, samples: npt.NDArray[np.int16]) -> None:
    """`samples` in 10 ms frames, then silence forever (capture_frame paces at real time)."""
    step = SAMPLE_RATE // 100
    position = 0
    while True:
        frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, step)
        chunk = samples[position : position + step]
        np.frombuffer(frame.data, dtype=np.int16)[: chunk.size] = chunk
        position += step
        await source.capture_frame(frame)


async def test_digits_and_quality_windows_are_reported(devserver: DevServer, room_name: str) -> None:
    attached = Signal()
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def analysers(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        ctx.attach(
            ["dtmf", "audio-quality(window_ms=500)"], participants=["alice"], output=DataOutput(topic="qa")
        )
        attached.set(ctx)

    tones = sequence(
        [Tone(key, duration_ms=80) for key in SENT], pause_ms=120, noise_dbfs=-50, rate=SAMPLE_RATE
    )
    async with serving(server), joined(devserver, "bob", room_name) as bob:
        messages: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        bob.on(
            "data_received",
            lambda packet: packet.topic == "qa" and messages.put_nowait(json.loads(packet.data)),
        )
        async with joined(devserver, "alice", room_name) as alice:
            await attached.wait()
            source = rtc.AudioSource(SAMPLE_RATE, 1)
            track = rtc.LocalAudioTrack.create_audio_track("mic", source)
            await asyncio.wait_for(alice.local_participant.publish_track(track), EVENT)
            lead = np.zeros(SAMPLE_RATE // 2, np.int16)  # the track's first frames may be lost
            feeding = asyncio.create_task(play(source, np.concatenate((lead, tones))))
            try:
                digits, windows = "", []
                while len(digits) < len(SENT) or not windows:
                    message = await asyncio.wait_for(messages.get(), EVENT)
                    data = message["data"]
                    assert isinstance(data, dict)
                    digits += str(data["digit"]) if data.get("event") == "digit" else ""
                    if message["processor"] == "audio-quality" and "event" not in data:
                        windows.append(data)
            finally:
                await stop(feeding)
    assert digits == SENT
    assert windows[0]["duration_ms"] == 500.0 and windows[0]["clipped_samples"] == 0
