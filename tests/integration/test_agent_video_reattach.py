"""A video track whose resolution grows past its ring's slot: the feed re-attaches with a bigger slot and the
processor receives the new geometry, pixels and size consistent (test process; real SDK over WebRTC, real
pool). The slot floor is lowered for the test (a module constant, so a 640x480 frame does not fit instead of
needing a 1080p RGBA frame, which a 2-core machine's encoder may refuse to send at full size)."""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import pytest
from livekit import rtc

from framepool.agent import session
from framepool.agent.job import JobContext
from framepool.agent.server import AgentServer
from framepool.agent.session import DataOutput
from framepool.devserver.server import DevServer
from framepool.processors import frame_bytes
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.sdk import joined, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


async def _camera(source: rtc.VideoSource, size: list[int]) -> None:
    """I420 frames at 30 fps in whatever size `size` holds now (the test changes it)."""
    loop = asyncio.get_running_loop()
    start, index = loop.time(), 0
    while True:
        width, height = size
        pixels = np.full(width * height * 3 // 2, (index * 4) % 256, np.uint8)
        source.capture_frame(rtc.VideoFrame(width, height, rtc.VideoBufferType.I420, pixels.tobytes()))
        index += 1
        await asyncio.sleep(max(0.0, start + index / 30 - loop.time()))


async def test_resolution_growing_past_the_slot_reattaches_with_the_new_geometry(
    devserver: DevServer, room_name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(session, "MIN_VIDEO_SLOT", frame_bytes(320, 240, "RGBA"))
    caplog.set_level(logging.INFO, logger="framepool.agent.session")
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)
    attached = Signal()

    @server.rtc_session()
    async def entry(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        probe = "tests.support.procs:VideoProbe(pixel_format=RGBA)"
        ctx.attach(probe, participants=["alice"], output=DataOutput(topic="probe"))
        attached.set()

    async with serving(server), joined(devserver, "alice", room_name) as alice:
        probes: asyncio.Queue[dict[str, int]] = asyncio.Queue()
        alice.on(
            "data_received", lambda p: p.topic == "probe" and probes.put_nowait(json.loads(p.data)["data"])
        )
        await attached.wait()
        size = [320, 240]
        source = rtc.VideoSource(*size)
        track = rtc.LocalVideoTrack.create_video_track("camera", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, simulcast=False)
        await asyncio.wait_for(alice.local_participant.publish_track(track, options), EVENT)
        camera = asyncio.create_task(_camera(source, size))
        try:
            first = await _next_probe(probes, lambda p: p["width"] * p["height"] > 0)
            assert first["width"] * first["height"] <= 320 * 240
            size[:] = [640, 480]  # 1.2 MB in RGBA: past the 307 KB slot
            grown = await _next_probe(probes, lambda p: p["width"] * p["height"] > 320 * 240)
            # Before the job ends (which detaches too): the first attachment was detached for the bigger one.
            detached = [r.getMessage() for r in caplog.records if r.getMessage().endswith(": detached ")]
            assert len(detached) == 1, "the feed did not re-attach"
        finally:
            await stop(camera)
    assert grown["bytes"] == frame_bytes(grown["width"], grown["height"], "RGBA")
    assert grown["got"] == "RGBA"


async def _next_probe(probes: asyncio.Queue[dict[str, int]], wanted: object) -> dict[str, int]:
    async with asyncio.timeout(EVENT):
        while True:
            probe = await probes.get()
            if wanted(probe):  # type: ignore[operator]
                return probe
