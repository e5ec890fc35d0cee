"""Media through the loopback dev server with the real livekit SDK (default RoomOptions)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc

from framepool.devserver.server import DevServer
from tests.integration.sdk import (
    TIMEOUT,
    joined,
    next_event,
    publish_tone,
    publish_video,
    stop,
    subscribed_track,
)

pytestmark = pytest.mark.integration


async def tone_energy(track: rtc.RemoteTrack, frames: int = 50) -> float:
    """Mean absolute sample value over `frames` frames after the first loud one arrives."""
    stream = rtc.AudioStream(track, sample_rate=48000, num_channels=1)
    levels: list[float] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            async for event in stream:
                level = float(np.abs(np.frombuffer(event.frame.data, dtype=np.int16)).mean())
                if levels or level > 1000:
                    levels.append(level)
                if len(levels) >= frames:
                    break
    finally:
        await stream.aclose()
    return float(np.median(levels))


async def test_audio_reaches_subscriber(devserver: DevServer, room_name: str) -> None:
    async with joined(devserver, "alice", room_name) as alice, joined(devserver, "bob", room_name) as bob:
        _, feeding = await publish_tone(alice)
        try:
            track = await subscribed_track(bob, "alice", rtc.TrackKind.KIND_AUDIO)
            # A 10000-amplitude sine has a mean absolute value of 10000 * 2 / pi.
            assert await tone_energy(track) == pytest.approx(6366, rel=0.15)
        finally:
            await stop(feeding)


async def test_720p_video_with_default_simulcast(devserver: DevServer, room_name: str) -> None:
    """Default options publish 720p as simulcast; the server receives one layer and relays it.

    libwebrtc picks the layer's resolution from its bandwidth estimate (360p or 720p here), so the test
    checks that frames keep the published geometry's aspect ratio and at least the middle layer's size.
    """
    async with joined(devserver, "alice", room_name) as alice, joined(devserver, "bob", room_name) as bob:
        publication, feeding = await publish_video(alice, 1280, 720)
        try:
            track = await subscribed_track(bob, "alice", rtc.TrackKind.KIND_VIDEO)
            remote = bob.remote_participants["alice"].track_publications[publication.sid]
            assert (remote.width, remote.height) == (1280, 720)
            stream = rtc.VideoStream(track)
            sizes = []
            async with asyncio.timeout(TIMEOUT):
                async for event in stream:
                    sizes.append((event.frame.width, event.frame.height))
                    if len(sizes) >= 30:
                        break
            await stream.aclose()
            width, height = sizes[-1]
            assert width >= 640 and width * 9 == height * 16
        finally:
            await stop(feeding)


async def test_late_joiner_receives_existing_tracks(devserver: DevServer, room_name: str) -> None:
    async with joined(devserver, "alice", room_name) as alice:
        _, audio = await publish_tone(alice)
        _, video = await publish_video(alice, 640, 360)
        try:
            async with joined(devserver, "late", room_name) as late:
                audio_track = await subscribed_track(late, "alice", rtc.TrackKind.KIND_AUDIO)
                await subscribed_track(late, "alice", rtc.TrackKind.KIND_VIDEO)
                assert await tone_energy(audio_track, frames=10) > 3000
        finally:
            await stop(audio)
            await stop(video)


async def test_mute_unpublish_and_manual_subscription(devserver: DevServer, room_name: str) -> None:
    async with joined(devserver, "alice", room_name) as alice, joined(devserver, "bob", room_name) as bob:
        publication, feeding = await publish_tone(alice)
        try:
            await subscribed_track(bob, "alice", rtc.TrackKind.KIND_AUDIO)
            muted = next_event(bob, "track_muted")
            publication.track.mute()
            assert (await asyncio.wait_for(muted, TIMEOUT))[1].sid == publication.sid
            unmuted = next_event(bob, "track_unmuted")
            publication.track.unmute()
            assert (await asyncio.wait_for(unmuted, TIMEOUT))[1].sid == publication.sid

            remote = bob.remote_participants["alice"].track_publications[publication.sid]
            unsubscribed = next_event(bob, "track_unsubscribed")
            remote.set_subscribed(False)
            await asyncio.wait_for(unsubscribed, TIMEOUT)
            resubscribed = next_event(bob, "track_subscribed")
            remote.set_subscribed(True)
            await asyncio.wait_for(resubscribed, TIMEOUT)

            unpublished = next_event(bob, "track_unpublished")
            await alice.local_participant.unpublish_track(publication.sid)
            assert (await asyncio.wait_for(unpublished, TIMEOUT))[0].sid == publication.sid
        finally:
            await stop(feeding)
