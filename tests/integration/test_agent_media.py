"""Frames from a room through the worker pool and back: data results, a processed video track, worker
crashes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import numpy as np
import pytest
from livekit import rtc

from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput, TrackOutput
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from framepool.devserver.signal import SignalSession
from framepool.processors import AudioFormat, VideoFormat
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.sdk import joined, publish_tone, publish_video, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


def data_messages(room: rtc.Room, topic: str) -> asyncio.Queue[dict[str, object]]:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    def on_data(packet: rtc.DataPacket) -> None:
        if packet.topic == topic:
            queue.put_nowait(json.loads(packet.data))

    room.on("data_received", on_data)
    return queue


def levels_server(devserver: DevServer, attached: Signal, **settings: object) -> AgentServer:
    server = AgentServer(agent_settings(devserver, **settings), load_fnc=quiet_load)

    @server.rtc_session()
    async def levels(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        ctx.attach("audio-level(window_ms=100)", participants=["alice"], output=DataOutput(topic="levels"))
        attached.set(ctx)

    return server


@pytest.mark.parametrize("single_peer_connection", [False, True], ids=["classic-pair", "single-pc"])
async def test_results_reach_another_participant_on_the_topic(
    devserver: DevServer, room_name: str, single_peer_connection: bool
) -> None:
    """Both connection modes deliver; the default is the classic pair (no idle pre-created receivers)."""
    attached = Signal()
    server = levels_server(devserver, attached, single_peer_connection=single_peer_connection)
    async with serving(server), joined(devserver, "bob", room_name) as bob:
        results = data_messages(bob, "levels")
        async with joined(devserver, "alice", room_name) as alice:
            ctx: JobContext = await attached.wait()
            assert agent_uses_single_pc(devserver, room_name, ctx.agent.identity) is single_peer_connection
            _, feeding = await publish_tone(alice)
            try:
                message = await asyncio.wait_for(results.get(), EVENT)
            finally:
                await stop(feeding)
    assert message["participant"] == "alice"
    assert message["processor"] == "audio-level"
    assert str(message["track"]).startswith("TR_")
    assert isinstance(message["data"], dict)


async def test_processors_on_one_track_wanting_different_formats_each_get_theirs(
    devserver: DevServer, room_name: str
) -> None:
    """16 kHz / 20 ms and 48 kHz / 10 ms on one audio track, RGB24 and I420 on one video track: one SDK
    stream and one ring per format, each processor receiving frames in its own."""
    attached = Signal()
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def probes(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        output = DataOutput(topic="probes")
        audio = [
            "tests.support.procs:AudioProbe(sample_rate=16000, frame_ms=20, every=5)",
            "tests.support.procs:AudioProbe(sample_rate=48000, frame_ms=10, every=10)",
        ]
        video = ["tests.support.procs:VideoProbe(pixel_format=RGB24)", "tests.support.procs:VideoProbe"]
        rules = [
            ctx.attach(processors, participants=["alice"], output=output) for processors in (audio, video)
        ]
        attached.set(rules)

    async with serving(server), joined(devserver, "bob", room_name) as bob:
        results = data_messages(bob, "probes")
        async with joined(devserver, "alice", room_name) as alice:
            rules = await attached.wait()
            _, tone = await publish_tone(alice)
            _, camera = await publish_video(alice, 320, 240)
            try:
                seen: dict[str, dict[str, object]] = {}
                while len(seen) < 4:
                    message = await asyncio.wait_for(results.get(), EVENT)
                    data = message["data"]
                    assert isinstance(data, dict)
                    seen.setdefault(str(data["wanted"]), data)
                feeds = {key: feed.group.fmt for rule in rules for key, feed in rule.feeds.items()}
            finally:
                await stop(tone)
                await stop(camera)
    for rate, frame_ms in [(16000, 20), (48000, 10)]:
        got = seen[str({"sample_rate": rate, "frame_ms": frame_ms})]["got"]
        assert got == {"sample_rate": rate, "samples": rate * frame_ms // 1000}
    for pixel_format in ("RGB24", "I420"):
        probe = seen[pixel_format]
        assert (probe["got"], probe["width"], probe["height"]) == (pixel_format, 320, 240)
    assert sorted(map(str, feeds.values())) == sorted(
        map(
            str,
            [
                AudioFormat(sample_rate=16000, frame_ms=20),
                AudioFormat(frame_ms=10),
                VideoFormat(pixel_format="RGB24"),
                VideoFormat(),
            ],
        )
    )


def agent_uses_single_pc(devserver: DevServer, room_name: str, identity: str) -> bool:
    """Whether the agent joined over /rtc/v1 (one peer connection), as the dev server saw it."""
    room = devserver.rooms.get(room_name)
    assert room is not None
    link = room.participants[identity].link
    assert isinstance(link, SignalSession)
    return link.media.single_pc


async def test_a_killed_worker_costs_a_gap_not_the_job(devserver: DevServer, room_name: str) -> None:
    attached = Signal()
    server = levels_server(devserver, attached)
    async with serving(server), joined(devserver, "bob", room_name) as bob:
        results = data_messages(bob, "levels")
        async with joined(devserver, "alice", room_name) as alice:
            ctx: JobContext = await attached.wait()
            _, feeding = await publish_tone(alice)
            try:
                await asyncio.wait_for(results.get(), EVENT)
                assert server.pool is not None
                [victim] = server.pool.worker_pids()
                os.kill(victim, signal.SIGKILL)
                while True:  # results produced after the restart, by another process
                    await asyncio.wait_for(results.get(), EVENT)
                    pids = server.pool.worker_pids()
                    if pids and victim not in pids:
                        break
                await asyncio.wait_for(results.get(), EVENT)
                assert ctx.job.id in server.jobs
                assert server.pool.stats().restarts >= 1
            finally:
                await stop(feeding)


async def publish_gray(room: rtc.Room, luma: int, width: int = 320, height: int = 240) -> asyncio.Task[None]:
    source = rtc.VideoSource(width, height)
    track = rtc.LocalVideoTrack.create_video_track("camera", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
    )
    frame = np.full(width * height * 3 // 2, 128, np.uint8)
    frame[: width * height] = luma

    async def feed() -> None:
        while True:
            source.capture_frame(rtc.VideoFrame(width, height, rtc.VideoBufferType.I420, frame.tobytes()))
            await asyncio.sleep(1 / 15)

    return asyncio.create_task(feed())


async def test_a_processed_video_track_reaches_another_participant(
    devserver: DevServer, room_name: str
) -> None:
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def negative(ctx: JobContext) -> None:
        await ctx.connect()
        ctx.attach("framepool.demo.processors:Negative", sources=["camera"], output=TrackOutput("negative"))

    async with serving(server), joined(devserver, "bob", room_name) as bob:
        subscribed: asyncio.Future[tuple[rtc.Track, str]] = asyncio.get_running_loop().create_future()

        def on_track(
            track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
        ) -> None:
            if publication.name.startswith("negative:") and not subscribed.done():
                subscribed.set_result((track, participant.identity))

        bob.on("track_subscribed", on_track)
        async with joined(devserver, "alice", room_name) as alice:
            feeding = await publish_gray(alice, luma=40)
            try:
                track, publisher = await asyncio.wait_for(subscribed, EVENT)
                assert publisher.startswith("agent-")
                stream = rtc.VideoStream(track, format=rtc.VideoBufferType.I420)
                try:
                    event = await asyncio.wait_for(anext(aiter(stream)), EVENT)
                finally:
                    await stream.aclose()
            finally:
                await stop(feeding)
    frame = event.frame
    luma = np.frombuffer(frame.data, np.uint8)[: frame.width * frame.height]
    assert (frame.width, frame.height) == (320, 240)
    assert abs(float(luma.mean()) - 215) < 20  # 255 - 40, through two lossy encodings


async def test_results_of_audio_and_video_share_the_wall_clock(devserver: DevServer, room_name: str) -> None:
    """A participant's audio and video results carry frame times on one clock, the supervisor's wall clock
    at arrival (the SDK's video timestamp is on CLOCK_MONOTONIC and would not line up with audio)."""
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def analysis(ctx: JobContext) -> None:
        await ctx.connect()
        ctx.attach("audio-level(window_ms=100)", output=DataOutput(topic="analysis"))
        ctx.attach("video-motion", output=DataOutput(topic="analysis"))

    async with serving(server), joined(devserver, "bob", room_name) as bob:
        received: asyncio.Queue[tuple[int, dict[str, object]]] = asyncio.Queue()
        bob.on(
            "data_received",
            lambda packet: received.put_nowait((time.time_ns() // 1000, json.loads(packet.data))),
        )
        async with joined(devserver, "alice", room_name) as alice:
            _, tone = await publish_tone(alice)
            video = await publish_gray(alice, luma=90)
            latest: dict[object, tuple[int, dict[str, object]]] = {}
            try:
                while len(latest) < 2:
                    arrived, message = await asyncio.wait_for(received.get(), EVENT)
                    latest[message["processor"]] = (arrived, message)
            finally:
                await stop(tone)
                await stop(video)
    assert set(latest) == {"audio-level", "video-motion"}
    for arrived, message in latest.values():
        assert message["participant"] == "alice"
        frame_time = message["frame_time_us"]
        assert isinstance(frame_time, int) and arrived - 10_000_000 < frame_time <= arrived
