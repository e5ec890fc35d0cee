"""privacy-blur and snapshot live: a camera showing a face, through the agent server, the worker pool and the
dev server; another participant receives the redacted track and the JPEG byte streams."""

from __future__ import annotations

import asyncio
import io

import cv2
import numpy as np
import pytest
from livekit import rtc
from PIL import Image
from skimage import data

from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput, TrackOutput
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from framepool.processors._faces import Box, dilated
from framepool.processors.privacy_blur import PrivacyBlurParams
from tests.support.agentkit import agent_settings, quiet_load, serving
from tests.support.pictures import U8, i420_to_rgb, luma_of, psnr, rgb_to_i420
from tests.support.sdk import joined, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration

WIDTH, HEIGHT, FPS = 320, 240, 15
HEAD_AT, HEAD_SCALE = (100, 40), 0.6
FACE_IN_HEAD = (48, 58, 140, 162)  # the hand-labelled face of astronaut() (tests/unit/test_privacy_blur.py)


def face_picture() -> tuple[U8, Box]:
    """The astronaut's head on `coffee`, as an I420 buffer, and its labelled face box."""
    scene = np.asarray(cv2.resize(data.coffee(), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA))
    head = np.asarray(
        cv2.resize(
            data.astronaut()[20:230, 130:320],
            None,
            fx=HEAD_SCALE,
            fy=HEAD_SCALE,
            interpolation=cv2.INTER_AREA,
        )
    )
    x, y = HEAD_AT
    scene[y : y + head.shape[0], x : x + head.shape[1]] = head
    x0, y0, x1, y1 = (round(value * HEAD_SCALE) for value in FACE_IN_HEAD)
    return rgb_to_i420(scene), (x + x0, y + y0, x + x1, y + y1)


async def publish_picture(room: rtc.Room, picture: U8) -> asyncio.Task[None]:
    source = rtc.VideoSource(WIDTH, HEIGHT)
    track = rtc.LocalVideoTrack.create_video_track("camera", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
    )
    frame = rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.I420, picture.tobytes())

    async def feed() -> None:
        while True:
            source.capture_frame(frame)
            await asyncio.sleep(1 / FPS)

    return asyncio.create_task(feed())


def faces_near(luma: U8, box: Box) -> int:
    """Faces found by a cascade other than the processor's, at full resolution, overlapping `box`."""
    classifier = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_alt2.xml")
    found = classifier.detectMultiScale(luma, scaleFactor=1.05, minNeighbors=3)
    return sum(1 for x, y, w, h in found if x < box[2] and box[0] < x + w and y < box[3] and box[1] < y + h)


async def test_the_redacted_track_reaches_another_participant(devserver: DevServer, room_name: str) -> None:
    picture, face = face_picture()
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def blur(ctx: JobContext) -> None:
        await ctx.connect()
        ctx.attach("privacy-blur", sources=["camera"], output=TrackOutput("blurred"))

    async with serving(server), joined(devserver, "bob", room_name) as bob:
        subscribed: asyncio.Future[rtc.Track] = asyncio.get_running_loop().create_future()

        def on_track(
            track: rtc.Track, publication: rtc.RemoteTrackPublication, _: rtc.RemoteParticipant
        ) -> None:
            if publication.name.startswith("blurred:") and not subscribed.done():
                subscribed.set_result(track)

        bob.on("track_subscribed", on_track)
        async with joined(devserver, "alice", room_name) as alice:
            feeding = await publish_picture(alice, picture)
            try:
                stream = rtc.VideoStream(
                    await asyncio.wait_for(subscribed, EVENT), format=rtc.VideoBufferType.I420
                )
                try:
                    frames = []
                    async for event in stream:  # past the first frames, while the encoder ramps up
                        frames.append(event.frame)
                        if len(frames) == 10:
                            break
                finally:
                    await stream.aclose()
            finally:
                await stop(feeding)
    received = frames[-1]
    assert (received.width, received.height) == (WIDTH, HEIGHT)
    luma = np.frombuffer(received.data, np.uint8)[: WIDTH * HEIGHT].reshape(HEIGHT, WIDTH)
    source = luma_of(picture, WIDTH, HEIGHT)
    assert faces_near(source, face) == 1
    assert faces_near(luma, face) == 0
    x0, y0, x1, y1 = dilated(face, PrivacyBlurParams().dilate, WIDTH, HEIGHT)
    outside = np.ones((HEIGHT, WIDTH), bool)
    outside[y0:y1, x0:x1] = False
    difference = np.abs(luma.astype(np.int16) - source.astype(np.int16))
    assert difference[outside].mean() < 6.0  # two VP8 encodings; the rest of the picture is untouched
    assert difference[~outside].mean() > 10.0


async def test_snapshots_reach_another_participant_as_byte_streams(
    devserver: DevServer, room_name: str
) -> None:
    picture, _face = face_picture()
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def snapshots(ctx: JobContext) -> None:
        await ctx.connect()
        ctx.attach(
            "snapshot(interval_ms=500, quality=90)", sources=["camera"], output=DataOutput(topic="results")
        )

    received: asyncio.Queue[tuple[rtc.ByteStreamInfo, bytes]] = asyncio.Queue()
    readers: set[asyncio.Task[None]] = set()

    def on_stream(reader: rtc.ByteStreamReader, _sender: str) -> None:
        async def read() -> None:
            received.put_nowait((reader.info, b"".join([chunk async for chunk in reader])))

        task = asyncio.get_running_loop().create_task(read())
        readers.add(task)
        task.add_done_callback(readers.discard)

    async with serving(server), joined(devserver, "bob", room_name) as bob:
        bob.register_byte_stream_handler("snapshot", on_stream)
        async with joined(devserver, "alice", room_name) as alice:
            feeding = await publish_picture(alice, picture)
            try:
                first = await asyncio.wait_for(received.get(), EVENT)
                second = await asyncio.wait_for(received.get(), EVENT)
            finally:
                await stop(feeding)
    reference = i420_to_rgb(picture, WIDTH, HEIGHT)
    for info, jpeg in (first, second):
        assert (info.topic, info.mime_type, info.name) == (
            "snapshot",
            "image/jpeg",
            f"snapshot-{info.attributes['time_us']}.jpg",
        )
        assert info.attributes["participant"] == "alice" and info.attributes["processor"] == "snapshot"
        assert (info.attributes["width"], info.attributes["height"]) == (str(WIDTH), str(HEIGHT))
        with Image.open(io.BytesIO(jpeg)) as image:
            assert (image.format, image.size) == ("JPEG", (WIDTH, HEIGHT))
            assert psnr(np.asarray(image.convert("RGB")), reference) >= 25.0  # VP8, then JPEG
    interval_us = int(second[0].attributes["time_us"]) - int(first[0].attributes["time_us"])
    assert 400_000 <= interval_us <= 600_000
