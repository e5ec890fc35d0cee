"""Media through the loopback dev server with the real livekit SDK, over each signal path (the signal_mode
fixture in tests/integration/conftest.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiohttp import WSCloseCode
from livekit import rtc
from livekit.protocol import models

from framepool.devserver.rooms import Participant
from framepool.devserver.signal import SignalSession
from tests.support.devserver import SignalMode
from tests.support.sdk import (
    joined,
    next_event,
    publish_tone,
    publish_video,
    stop,
    subscribed_track,
)
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


async def tone_energy(track: rtc.RemoteTrack, frames: int = 50) -> float:
    """Mean absolute sample value over `frames` frames after the first loud one arrives."""
    stream = rtc.AudioStream(track, sample_rate=48000, num_channels=1)
    levels: list[float] = []
    try:
        async with asyncio.timeout(EVENT):
            async for event in stream:
                level = float(np.abs(np.frombuffer(event.frame.data, dtype=np.int16)).mean())
                if levels or level > 1000:
                    levels.append(level)
                if len(levels) >= frames:
                    break
    finally:
        await stream.aclose()
    return float(np.median(levels))


async def test_audio_and_data_both_ways(signal_mode: SignalMode, room_name: str) -> None:
    server, options = signal_mode.server, signal_mode.options
    async with (
        joined(server, "alice", room_name, options) as alice,
        joined(server, "bob", room_name, options) as bob,
    ):
        room = server.rooms.get(room_name)
        assert room is not None
        # The path the SDK took: one peer connection per participant only on /rtc/v1.
        assert {p.link.media.single_pc for p in room.participants.values()} == {  # type: ignore[union-attr]
            signal_mode.name == "single_pc"
        }
        _, alice_feed = await publish_tone(alice)
        _, bob_feed = await publish_tone(bob, "bob-mic")
        try:
            from_alice = await subscribed_track(bob, "alice", rtc.TrackKind.KIND_AUDIO)
            from_bob = await subscribed_track(alice, "bob", rtc.TrackKind.KIND_AUDIO)
            # A 10000-amplitude sine has a mean absolute value of 10000 * 2 / pi.
            assert await tone_energy(from_alice) == pytest.approx(6366, rel=0.15)
            assert await tone_energy(from_bob, frames=10) == pytest.approx(6366, rel=0.15)
            for sender, receiver in ((alice, bob), (bob, alice)):
                for reliable in (True, False):
                    received = next_event(receiver, "data_received")
                    # Lossy packets on loopback: a few, one is enough to prove the path.
                    for _ in range(1 if reliable else 5):
                        await sender.local_participant.publish_data(b"ping", reliable=reliable, topic="t")
                    packet = await asyncio.wait_for(received, EVENT)
                    assert (packet.data, packet.topic, packet.participant.identity) == (
                        b"ping",
                        "t",
                        sender.local_participant.identity,
                    )
        finally:
            await stop(alice_feed)
            await stop(bob_feed)


async def test_720p_video_with_default_simulcast(signal_mode: SignalMode, room_name: str) -> None:
    """Default simulcast publishes 720p in three layers; the server receives the top one at full size.

    Without the answer's start bitrate and with aiortc's REMB (rtc.py docstring) libwebrtc sends 640x360.
    The publisher asks to keep its resolution because libwebrtc's CPU adaptation also lowers it (to
    960x540 or 640x360) when this 2-core machine is overloaded by other test runs; that is the
    client's choice, not the server's doing, and would make the assertion flaky.
    """
    server, options = signal_mode.server, signal_mode.options
    async with (
        joined(server, "alice", room_name, options) as alice,
        joined(server, "bob", room_name, options) as bob,
    ):
        publish = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA,
            degradation_preference=rtc.DegradationPreference.MAINTAIN_RESOLUTION,
        )
        publication, feeding = await publish_video(alice, 1280, 720, options=publish)
        try:
            track = await subscribed_track(bob, "alice", rtc.TrackKind.KIND_VIDEO)
            remote = bob.remote_participants["alice"].track_publications[publication.sid]
            assert (remote.width, remote.height, remote.simulcasted) == (1280, 720, True)
            stream = rtc.VideoStream(track)
            sizes = []
            async with asyncio.timeout(EVENT):
                async for event in stream:
                    sizes.append((event.frame.width, event.frame.height))
                    if len(sizes) >= 30:
                        break
            await stream.aclose()
            assert set(sizes[-10:]) == {(1280, 720)}, sizes
        finally:
            await stop(feeding)


async def test_late_joiner_receives_existing_tracks(signal_mode: SignalMode, room_name: str) -> None:
    server, options = signal_mode.server, signal_mode.options
    async with joined(server, "alice", room_name, options) as alice:
        _, audio = await publish_tone(alice)
        _, video = await publish_video(alice, 640, 360)
        try:
            async with joined(server, "late", room_name, options) as late:
                audio_track = await subscribed_track(late, "alice", rtc.TrackKind.KIND_AUDIO)
                await subscribed_track(late, "alice", rtc.TrackKind.KIND_VIDEO)
                assert await tone_energy(audio_track, frames=10) > 3000
        finally:
            await stop(audio)
            await stop(video)


async def test_mute_unpublish_and_manual_subscription(signal_mode: SignalMode, room_name: str) -> None:
    server, options = signal_mode.server, signal_mode.options
    async with (
        joined(server, "alice", room_name, options) as alice,
        joined(server, "bob", room_name, options) as bob,
    ):
        publication, feeding = await publish_tone(alice)
        try:
            await subscribed_track(bob, "alice", rtc.TrackKind.KIND_AUDIO)
            muted = next_event(bob, "track_muted")
            publication.track.mute()
            assert (await asyncio.wait_for(muted, EVENT))[1].sid == publication.sid
            unmuted = next_event(bob, "track_unmuted")
            publication.track.unmute()
            assert (await asyncio.wait_for(unmuted, EVENT))[1].sid == publication.sid

            remote = bob.remote_participants["alice"].track_publications[publication.sid]
            unsubscribed = next_event(bob, "track_unsubscribed")
            remote.set_subscribed(False)
            await asyncio.wait_for(unsubscribed, EVENT)
            resubscribed = next_event(bob, "track_subscribed")
            remote.set_subscribed(True)
            await asyncio.wait_for(resubscribed, EVENT)

            unpublished = next_event(bob, "track_unpublished")
            await alice.local_participant.unpublish_track(publication.sid)
            assert (await asyncio.wait_for(unpublished, EVENT))[0].sid == publication.sid
        finally:
            await stop(feeding)


async def test_dropped_signal_connection_reconnects_without_a_ghost(
    signal_mode: SignalMode, room_name: str
) -> None:
    """The SDK's resume after a dropped signal connection is answered as livekit-server answers a resume
    for a participant it no longer has (leave: STATE_MISMATCH, RECONNECT): the SDK rejoins at once under
    the same identity and republishes, and the others see alice leave with SIGNAL_CLOSE and come back once."""
    server, options = signal_mode.server, signal_mode.options
    joins: list[str] = []
    leaves: list[int] = []

    class Watcher:
        def participant_joined(self, room: object, participant: Participant) -> None:
            joins.append(participant.identity)

        def participant_left(self, room: object, participant: Participant, reason: int) -> None:
            leaves.append(reason)

    async with (
        joined(server, "alice", room_name, options) as alice,
        joined(server, "bob", room_name, options) as bob,
    ):
        _, feeding = await publish_tone(alice)
        try:
            await subscribed_track(bob, "alice", rtc.TrackKind.KIND_AUDIO)
            room = server.rooms.get(room_name)
            assert room is not None
            link = room.participants["alice"].link
            assert isinstance(link, SignalSession)
            server.rooms.add_listener(Watcher())
            reconnected = next_event(alice, "reconnected")
            resubscribed = next_event(bob, "track_subscribed", lambda t, pub, p: p.identity == "alice")
            await link.ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"dropped by the test")
            await asyncio.wait_for(reconnected, EVENT)
            track, _, _ = await asyncio.wait_for(resubscribed, EVENT)
            assert await tone_energy(track, frames=10) > 3000
            assert (joins, leaves) == (["alice"], [models.DisconnectReason.SIGNAL_CLOSE])
            received = next_event(bob, "data_received")
            await alice.local_participant.publish_data(b"back", reliable=True)
            assert (await asyncio.wait_for(received, EVENT)).data == b"back"
        finally:
            await stop(feeding)
