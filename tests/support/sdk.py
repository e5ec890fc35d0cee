"""Helpers for integration tests that drive the real livekit SDK against the loopback dev server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from livekit import rtc

from framepool.devserver.server import DevServer
from tests.support.devserver import make_token
from tests.support.timeouts import EVENT

SAMPLE_RATE = 48000
AGENT_KIND = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


@asynccontextmanager
async def joined(
    server: DevServer, identity: str, room: str, options: rtc.RoomOptions | None = None, **grants: Any
) -> AsyncIterator[rtc.Room]:
    """An SDK room connected as `identity` (default RoomOptions unless given), disconnected on exit."""
    sdk_room = rtc.Room()
    await asyncio.wait_for(
        sdk_room.connect(server.url, make_token(identity, room, **grants), options or rtc.RoomOptions()),
        EVENT,
    )
    try:
        yield sdk_room
    finally:
        await sdk_room.disconnect()


def next_event(
    emitter: Any, name: str, predicate: Callable[..., bool] = lambda *a: True
) -> asyncio.Future[Any]:
    """A future resolved with the arguments of the next `name` event that satisfies `predicate`."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def handler(*args: Any) -> None:
        if not future.done() and predicate(*args):
            future.set_result(args[0] if len(args) == 1 else args)

    emitter.on(name, handler)
    future.add_done_callback(lambda _: emitter.off(name, handler))
    return future


async def tone(source: rtc.AudioSource, hz: float = 440.0, amplitude: int = 10000) -> None:
    """Feed a sine tone in 10 ms frames forever (capture_frame paces it at real time)."""
    n = 0
    samples = SAMPLE_RATE // 100
    while True:
        frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, samples)
        t = np.arange(n, n + samples)
        np.frombuffer(frame.data, dtype=np.int16)[:] = (
            amplitude * np.sin(2 * np.pi * hz * t / SAMPLE_RATE)
        ).astype(np.int16)
        n += samples
        await source.capture_frame(frame)


async def video_pattern(source: rtc.VideoSource, width: int, height: int, fps: float = 30.0) -> None:
    """Feed moving I420 frames at `fps` (the media clock of a camera)."""
    index = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    buffer = bytearray(width * height * 3 // 2)
    while True:
        view = np.frombuffer(buffer, dtype=np.uint8)
        view[: width * height] = (index * 4) % 256
        frame = rtc.VideoFrame(width, height, rtc.VideoBufferType.I420, bytes(buffer))
        source.capture_frame(frame)
        index += 1
        await asyncio.sleep(max(0.0, start + index / fps - loop.time()))


async def publish_tone(
    sdk_room: rtc.Room, name: str = "mic"
) -> tuple[rtc.LocalTrackPublication, asyncio.Task[None]]:
    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track(name, source)
    publication = await asyncio.wait_for(sdk_room.local_participant.publish_track(track), EVENT)
    return publication, asyncio.create_task(tone(source))


async def publish_video(
    sdk_room: rtc.Room,
    width: int = 1280,
    height: int = 720,
    name: str = "camera",
    options: rtc.TrackPublishOptions | None = None,
) -> tuple[rtc.LocalTrackPublication, asyncio.Task[None]]:
    source = rtc.VideoSource(width, height)
    track = rtc.LocalVideoTrack.create_video_track(name, source)
    options = options or rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
    publication = await asyncio.wait_for(sdk_room.local_participant.publish_track(track, options), EVENT)
    return publication, asyncio.create_task(video_pattern(source, width, height))


async def subscribed_track(sdk_room: rtc.Room, publisher: str, kind: int) -> rtc.RemoteTrack:
    """The remote track of `kind` from `publisher`, waiting for the subscription if needed."""
    participant = sdk_room.remote_participants.get(publisher)
    if participant is not None:
        for publication in participant.track_publications.values():
            if publication.kind == kind and publication.track is not None:
                return publication.track
    track, _, _ = await asyncio.wait_for(
        next_event(
            sdk_room, "track_subscribed", lambda t, pub, p: p.identity == publisher and t.kind == kind
        ),
        EVENT,
    )
    return track


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def agent_of(room: rtc.Room) -> rtc.RemoteParticipant:
    """The agent participant of `room`, once it has joined (it may have before `room` connected)."""
    joining = next_event(room, "participant_connected", lambda p: p.kind == AGENT_KIND)
    present = [p for p in room.remote_participants.values() if p.kind == AGENT_KIND]
    if present:
        joining.cancel()
        return present[0]
    participant: rtc.RemoteParticipant = await joining
    return participant
