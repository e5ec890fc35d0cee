"""Where a feed's results go besides the pool (supervisor process): `DataOutput` (results as data messages)
and `TrackOutput` (output frames as a published track), and the `TrackPublisher` that turns a feed's output
frames into a LocalAudioTrack/LocalVideoTrack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from livekit import rtc

from framepool.ipc.slots import PIXEL_FORMATS, OutputAudio, OutputFrame, OutputVideo

# The SDK's buffer types carry the Processor API's pixel format names.
BUFFER_TYPES = {name: rtc.VideoBufferType.Value(name) for name in PIXEL_FORMATS}


@dataclass(frozen=True)
class DataOutput:
    """Results as data messages: on `topic` (empty: each result's own topic), to `destinations` (empty:
    everyone)."""

    topic: str = ""
    reliable: bool = True
    destinations: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrackOutput:
    """Output frames (ctx.publish_audio/publish_video) as a published track named `name:<source track
    sid>`; when the rule's processors want several input formats, the feeds of the second and later
    formats publish as `name:<sid>.1`, `.2`, ... so no two output tracks share a name."""

    name: str = "framepool"


Output = DataOutput | TrackOutput


class PublisherHost(Protocol):
    """What a TrackPublisher needs of its room session."""

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task[None]: ...

    async def publish_track(
        self, track: rtc.LocalAudioTrack | rtc.LocalVideoTrack, source: rtc.TrackSource.ValueType
    ) -> None: ...


class TrackPublisher:
    """Output frames of one feed → a LocalVideoTrack/LocalAudioTrack, published on the first frame."""

    def __init__(self, session: PublisherHost, output: TrackOutput, source_sid: str) -> None:
        self.session = session
        self.name = f"{output.name}:{source_sid}"
        self.video: rtc.VideoSource | None = None
        self.audio: rtc.AudioSource | None = None
        self._buffer = bytearray()
        self._audio_frames: asyncio.Queue[rtc.AudioFrame] = asyncio.Queue(maxsize=50)
        self._pump: asyncio.Task[None] | None = None

    def frame(self, frame: OutputFrame) -> None:
        if isinstance(frame, OutputAudio):
            self._audio(frame)
        else:
            self._video(frame)

    def _video(self, frame: OutputVideo) -> None:
        if self.video is None:
            self.video = rtc.VideoSource(frame.width, frame.height)
            track = rtc.LocalVideoTrack.create_video_track(self.name, self.video)
            self.session.spawn(self.session.publish_track(track, rtc.TrackSource.SOURCE_CAMERA))
        # The ring view is read-only and valid during this call only; the SDK needs a writable buffer.
        if len(self._buffer) != len(frame.data):
            self._buffer = bytearray(len(frame.data))
        self._buffer[:] = frame.data
        buffer_type = BUFFER_TYPES[frame.pixel_format]
        video = rtc.VideoFrame(frame.width, frame.height, buffer_type, self._buffer)
        # The SDK's capture clock is the wall clock in µs too (its default when the timestamp is 0).
        self.video.capture_frame(video, timestamp_us=frame.frame_time_us)

    def _audio(self, frame: OutputAudio) -> None:
        if self.audio is None:
            self.audio = rtc.AudioSource(frame.sample_rate, frame.channels)
            track = rtc.LocalAudioTrack.create_audio_track(self.name, self.audio)
            self.session.spawn(self.session.publish_track(track, rtc.TrackSource.SOURCE_MICROPHONE))
            self._pump = self.session.spawn(self._pump_audio(), name=f"audio pump {self.name}")
        if self._audio_frames.full():
            self._audio_frames.get_nowait()  # realtime: the newest audio matters more than a late one
        self._audio_frames.put_nowait(
            rtc.AudioFrame(bytes(frame.data), frame.sample_rate, frame.channels, frame.samples)
        )

    async def _pump_audio(self) -> None:
        assert self.audio is not None
        while True:
            await self.audio.capture_frame(await self._audio_frames.get())

    async def aclose(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        if self.audio is not None:
            await self.audio.aclose()
        if self.video is not None:
            await self.video.aclose()
