"""scene-cut, sharpness and brightness live: a camera track through the agent server and the loopback dev
server, results back in the room as data messages (the numbers themselves are checked against their
references in tests/unit and tests/process; here: they run on a real track and reach another
participant)."""

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
from tests.support import scenes
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.sdk import joined, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration

WIDTH, HEIGHT, FPS = 320, 240, 15
PROCESSORS = [
    "scene-cut(min_scene_len=5)",
    "sharpness(threshold=5, min_duration_ms=300)",
    "brightness(dark_below=40, min_duration_ms=300)",
]


async def publish_scenes(room: rtc.Room) -> asyncio.Task[None]:
    """A camera alternating every second between a bright textured scene and a dark one (a hard cut)."""
    source = rtc.VideoSource(WIDTH, HEIGHT)
    track = rtc.LocalVideoTrack.create_video_track("camera", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
    )
    bright = scenes.to_i420(scenes.scene_image(1, HEIGHT, WIDTH)).tobytes()
    dark = scenes.to_i420(scenes.scene_image(2, HEIGHT, WIDTH) // 8).tobytes()

    async def feed() -> None:
        count = 0
        while True:
            data = bright if (count // FPS) % 2 == 0 else dark
            source.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.I420, data))
            count += 1
            await asyncio.sleep(1 / FPS)

    return asyncio.create_task(feed())


async def test_cuts_sharpness_and_darkness_reach_another_participant(
    devserver: DevServer, room_name: str
) -> None:
    attached = Signal()
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def analyse(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        ctx.attach(PROCESSORS, participants=["alice"], output=DataOutput(topic="video-analysis"))
        attached.set(ctx)

    wanted = {"cut", "sharpness", "too_dark_start"}
    seen: dict[str, dict[str, object]] = {}
    async with serving(server), joined(devserver, "bob", room_name) as bob:
        messages: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        bob.on(
            "data_received",
            lambda packet: packet.topic == "video-analysis" and messages.put_nowait(json.loads(packet.data)),
        )
        async with joined(devserver, "alice", room_name) as alice:
            await attached.wait()
            feeding = await publish_scenes(alice)
            try:
                while not wanted <= seen.keys():
                    message = await asyncio.wait_for(messages.get(), EVENT)
                    data = message["data"]
                    assert isinstance(data, dict) and message["participant"] == "alice"
                    key = str(data.get("event", "sharpness" if "sharpness" in data else ""))
                    seen.setdefault(key, data)
            finally:
                await stop(feeding)
    cut = seen["cut"]
    assert isinstance(cut["score"], float) and cut["score"] >= 27.0 and isinstance(cut["time_us"], int)
    value = seen["sharpness"]["sharpness"]
    assert isinstance(value, float) and np.isfinite(value) and value > 0
    assert isinstance(seen["too_dark_start"]["YAVG"], float) and seen["too_dark_start"]["YAVG"] < 40
