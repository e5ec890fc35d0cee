"""black-frame and frozen-frame live: a camera that goes black and then holds a still picture, through the
agent server, the worker pool and the dev server; the runs reach another participant as events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from livekit import rtc

from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from tests.support.agentkit import agent_settings, quiet_load, serving
from tests.support.sdk import joined, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration

WIDTH, HEIGHT, FPS = 320, 240, 15
PHASES = [("moving", 0.8), ("black", 1.5), ("moving", 0.8), ("still", 1.5)]  # repeated


def picture(kind: str, index: int) -> bytes:
    if kind == "black":
        luma = np.full((HEIGHT, WIDTH), 16, np.uint8)
    else:
        shift = 6 * index if kind == "moving" else 0
        luma = ((np.add.outer(np.arange(HEIGHT), np.arange(WIDTH)) + shift) % 200 + 30).astype(np.uint8)
    return luma.tobytes() + bytes([128]) * (WIDTH * HEIGHT // 2)


async def camera(source: rtc.VideoSource) -> None:
    """The phases over and over at FPS, paced by the loop's clock."""
    loop = asyncio.get_running_loop()
    start, index = loop.time(), 0
    while True:
        for kind, seconds in PHASES:
            for _ in range(round(seconds * FPS)):
                frame = rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.I420, picture(kind, index))
                source.capture_frame(frame)
                index += 1
                await asyncio.sleep(max(0.0, start + index / FPS - loop.time()))


async def test_a_black_run_and_a_still_picture_are_reported_live(
    devserver: DevServer, room_name: str
) -> None:
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def checks(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        processors = ["black-frame(black_min_duration=0.5)", "frozen-frame(duration=0.5, noise=-50dB)"]
        ctx.attach(processors, participants=["alice"], output=DataOutput(topic="video-checks"))

    async with serving(server), joined(devserver, "bob", room_name) as bob:
        received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        bob.on("data_received", lambda packet: received.put_nowait(json.loads(packet.data)))
        async with joined(devserver, "alice", room_name) as alice:
            source = rtc.VideoSource(WIDTH, HEIGHT)
            track = rtc.LocalVideoTrack.create_video_track("camera", source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
            await alice.local_participant.publish_track(track, options)
            feeding = asyncio.create_task(camera(source))
            ends: dict[str, dict[str, Any]] = {}
            try:
                while len(ends) < 2:
                    message = await asyncio.wait_for(received.get(), EVENT)
                    data = message["data"]
                    if data.get("event") in ("black_end", "freeze_end"):
                        ends.setdefault(str(message["processor"]), data)
            finally:
                await stop(feeding)
    black, freeze = ends["black-frame"], ends["frozen-frame"]
    # The camera is black for 1.5 s and still (black or the gradient) for 1.5 s; frames arrive jittered.
    assert 1_000_000 <= black["black_duration_us"] <= 2_000_000
    assert 1_000_000 <= freeze["freeze_duration_us"] <= 2_000_000
    assert black["black_end_us"] == black["frame_time_us"] and not black["stream_ended"]
