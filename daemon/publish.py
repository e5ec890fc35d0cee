"""`framepool publish FILE|testsrc --room R`: put media into a room without writing code, paced in real
time like LiveKit's `lk room join --publish` (client process: the command is its own process, no
supervisor, no workers).

It joins with the real LiveKit rtc SDK, publishes a microphone track and a camera track (whichever the
source has), then sends each frame at its media time: a video frame when it is due, audio a little ahead
(`AUDIO_LEAD_S`) so the SDK's audio queue never runs dry between two turns of this loop. One line says
what was published, a progress line follows every `PROGRESS_EVERY_S`; the end of a file (without
`--loop`), Ctrl-C or SIGTERM leave the room in order and exit 0; losing the room exits 3; a missing file,
a file with nothing to publish or an unreachable server is one line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from livekit import rtc

from framepool.errors import ExitStatus, ServerUnavailableError
from framepool.publishmedia import SAMPLE_RATE, FileSource, TestSource, TimedFrame
from framepool.roomclient import Credentials, join
from framepool.signals import StopSignals
from framepool.tasks import first_of

AUDIO_LEAD_S = 0.1
PROGRESS_EVERY_S = 5.0


class MediaSender:
    """The room's two local tracks of one source, and what was sent on them."""

    def __init__(self, room: rtc.Room, source: TestSource | FileSource) -> None:
        self.room = room
        self.source = source
        shape = source.shape
        self.audio = rtc.AudioSource(SAMPLE_RATE, shape.channels) if shape.channels else None
        self.video = rtc.VideoSource(shape.width, shape.height) if shape.width else None
        self.audio_frames = self.video_frames = 0
        self.media_time_s = 0.0

    async def publish_tracks(self) -> None:
        local = self.room.local_participant
        if self.audio is not None:
            microphone = rtc.LocalAudioTrack.create_audio_track("audio", self.audio)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            await local.publish_track(microphone, options)
        if self.video is not None:
            camera = rtc.LocalVideoTrack.create_video_track("video", self.video)
            await local.publish_track(camera, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA))

    async def send(self, loop: bool) -> None:
        """Every frame of the source at its media time; returns at the end of a file not looped."""
        clock = asyncio.get_running_loop()
        start = clock.time()
        frames = self.source.frames(loop)
        while (timed := await asyncio.to_thread(_next_frame, frames)) is not None:
            lead = AUDIO_LEAD_S if isinstance(timed.frame, rtc.AudioFrame) else 0.0
            delay = start + timed.time_s - lead - clock.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.media_time_s = timed.time_s
            if isinstance(timed.frame, rtc.AudioFrame):
                assert self.audio is not None
                await self.audio.capture_frame(timed.frame)
                self.audio_frames += 1
            else:
                assert self.video is not None
                self.video.capture_frame(timed.frame)
                self.video_frames += 1

    async def report_progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            print(
                f"sent {self.media_time_s:.0f} s: {self.video_frames} video frames, "
                f"{self.audio_frames} audio frames",
                flush=True,
            )

    async def aclose(self) -> None:
        for source in (self.audio, self.video):
            if source is not None:
                await source.aclose()


def _next_frame(frames: Iterator[TimedFrame]) -> TimedFrame | None:
    return next(frames, None)


async def publish(
    creds: Credentials, source: TestSource | FileSource, room_name: str, identity: str, loop: bool
) -> int:
    """Join, publish, send until the source ends or a stop signal; the exit status."""
    signals = StopSignals()
    signals.install()
    room = rtc.Room()
    lost = asyncio.Event()
    room.on("disconnected", lambda reason: lost.set())
    sender = MediaSender(room, source)
    try:
        await join(room, creds, room_name, identity, can_publish=True)
        await sender.publish_tracks()
        print(
            f"published {source.name} to room {room_name!r} at {creds.url} as {identity!r}: "
            f"{source.shape.describe()}{' (looped)' if loop else ''}; Ctrl-C to leave",
            flush=True,
        )
        started = time.monotonic()
        progress = asyncio.create_task(sender.report_progress())
        try:
            ended = await first_of(
                {"end": sender.send(loop), "signal": signals.first.wait(), "lost": lost.wait()}
            )
        finally:
            progress.cancel()
        if ended == "lost":
            raise ServerUnavailableError(f"disconnected from room {room_name!r} at {creds.url}")
        what = "end of file" if ended == "end" else "leaving"
        print(
            f"{what} after {time.monotonic() - started:.1f} s: sent {sender.video_frames} video frames, "
            f"{sender.audio_frames} audio frames",
            flush=True,
        )
        return ExitStatus.OK
    finally:
        await room.disconnect()
        await sender.aclose()
