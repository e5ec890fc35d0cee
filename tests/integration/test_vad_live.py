"""`vad` and `silence` live: speech published by a participant reaches the worker pool, and the events reach
another participant on the processors' topics."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from livekit import rtc
from scipy.signal import resample_poly

from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.sdk import SAMPLE_RATE, joined, stop
from tests.support.speech_corpus import RATE, speak
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


def speech_with_pauses() -> np.ndarray:
    """One utterance then 1.5 s of digital silence, at the publishing rate."""
    utterance = speak("Hello, this is a test of voice activity detection.", "en-us")
    audio = np.concatenate([np.zeros(RATE // 2), utterance, np.zeros(3 * RATE // 2)])
    return np.round(resample_poly(audio, SAMPLE_RATE, RATE)).clip(-32768, 32767).astype(np.int16)


async def feed_loop(source: rtc.AudioSource, audio: np.ndarray) -> None:
    """Publish `audio` over and over in 10 ms frames (capture_frame paces it at real time)."""
    step = SAMPLE_RATE // 100
    while True:
        for offset in range(0, audio.size - step + 1, step):
            frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, step)
            np.frombuffer(frame.data, dtype=np.int16)[:] = audio[offset : offset + step]
            await source.capture_frame(frame)


async def first_event(queue: asyncio.Queue[dict[str, object]], event: str) -> dict[str, object]:
    while True:
        message = await queue.get()
        data = message["data"]
        if isinstance(data, dict) and data.get("event") == event:
            return message


async def test_speech_and_silence_events_reach_the_room(devserver: DevServer, room_name: str) -> None:
    attached = Signal()
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def listen(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        ctx.attach("vad(min_speech_ms=0)", participants=["alice"], output=DataOutput(topic="vad"))
        ctx.attach("silence(duration=0.5)", participants=["alice"], output=DataOutput(topic="silence"))
        attached.set(ctx)

    queues: dict[str, asyncio.Queue[dict[str, object]]] = {"vad": asyncio.Queue(), "silence": asyncio.Queue()}
    async with serving(server), joined(devserver, "bob", room_name) as bob:

        def on_data(packet: rtc.DataPacket) -> None:
            if packet.topic in queues:
                queues[packet.topic].put_nowait(json.loads(packet.data))

        bob.on("data_received", on_data)
        async with joined(devserver, "alice", room_name) as alice:
            await attached.wait()
            source = rtc.AudioSource(SAMPLE_RATE, 1)
            track = rtc.LocalAudioTrack.create_audio_track("mic", source)
            await asyncio.wait_for(alice.local_participant.publish_track(track), EVENT)
            feeding = asyncio.create_task(feed_loop(source, speech_with_pauses()))
            try:
                speech = await asyncio.wait_for(first_event(queues["vad"], "speech_start"), EVENT)
                silence = await asyncio.wait_for(first_event(queues["silence"], "silence_end"), EVENT)
            finally:
                await stop(feeding)
    assert speech["processor"] == "vad" and speech["participant"] == "alice"
    assert silence["processor"] == "silence"
    data = silence["data"]
    assert isinstance(data, dict) and int(str(data["duration_us"])) >= 500_000
