"""The live demo: dev server + framepool agent + a synthetic publisher + a listener (one process, supervisor
side).

`python -m framepool.demo [--seconds 20]` starts the loopback LiveKit dev server, an AgentServer with
one automatic agent (audio-level on the microphone, video-motion and a luma negative on the camera), a
publisher sending a tone and the moving test pattern of `framepool.demo.samples`, and a listener that prints
the results the agent publishes as data messages and counts the frames of the processed video track. At the
end everything shuts down in order and a summary is printed; the exit status is 0 only if results and
processed frames both arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
import uuid
import warnings
from typing import Any, Literal

from livekit import api, rtc

from framepool import loop as framepool_loop
from framepool.agent.job import JobContext, RunningJob
from framepool.agent.outputs import DataOutput, TrackOutput
from framepool.agent.server import AgentServer, pool_load
from framepool.demo.samples import test_pattern_frame, tone
from framepool.devserver.server import DevServer
from framepool.logs import setup_logging
from framepool.settings import Settings

KEY, SECRET = "devkey", "secret"
WIDTH, HEIGHT, FPS = 320, 240, 15


def build_server(settings: Settings) -> AgentServer:
    server = AgentServer(settings, load_fnc=pool_load)  # the dev server's media work shares this process

    @server.rtc_session()
    async def demo_agent(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        ctx.attach(
            "audio-level(window_ms=500)", sources=["microphone"], output=DataOutput(topic="audio-level")
        )
        ctx.attach(
            ["video-motion(emit_every=15)", "framepool.demo.processors:Negative"],
            sources=["camera"],
            output=[DataOutput(topic="video"), TrackOutput("negative")],
        )

    return server


def token(identity: str, room: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return api.AccessToken(KEY, SECRET).with_identity(identity).with_grants(grants).to_jwt()


async def publish(room: rtc.Room, seconds: float) -> None:
    """The synthetic publisher: a 440 Hz tone and the moving test pattern, paced in real time."""
    audio = rtc.AudioSource(48000, 1)
    video = rtc.VideoSource(WIDTH, HEIGHT)
    await room.local_participant.publish_track(
        rtc.LocalAudioTrack.create_audio_track("tone", audio),
        rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
    )
    await room.local_participant.publish_track(
        rtc.LocalVideoTrack.create_video_track("pattern", video),
        rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA),
    )

    async def audio_loop() -> None:
        for samples in tone(frame_ms=10):
            await audio.capture_frame(rtc.AudioFrame(samples.tobytes(), 48000, 1, len(samples)))

    async def video_loop() -> None:
        loop, start, index = asyncio.get_running_loop(), asyncio.get_running_loop().time(), 0
        while True:
            rgb = test_pattern_frame(index, WIDTH, HEIGHT, fps=FPS)
            video.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGB24, rgb.tobytes()))
            index += 1
            await asyncio.sleep(max(0.0, start + index / FPS - loop.time()))

    tasks = [asyncio.create_task(audio_loop()), asyncio.create_task(video_loop())]
    try:
        await asyncio.sleep(seconds)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Listener:
    """Prints the agent's data messages and counts the frames of its processed video track."""

    def __init__(self, room: rtc.Room) -> None:
        self.results: collections.Counter[str] = collections.Counter()
        self.processed_frames = 0
        self.processed_track = ""
        self._last_print: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        room.on("data_received", self._on_data)
        room.on("track_subscribed", self._on_track)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        self.results[packet.topic or ""] += 1
        message = json.loads(packet.data)
        key = f"{packet.topic}/{message.get('topic')}"
        now = time.monotonic()
        if now - self._last_print.get(key, 0.0) >= 2.0:
            self._last_print[key] = now
            print(
                f"  result  {message['topic']:<12} from {message['participant']}: "
                f"{json.dumps(message['data'])}"
            )

    def _on_track(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if track.kind == rtc.TrackKind.KIND_VIDEO and publication.name.startswith("negative"):
            self.processed_track = publication.name
            print(
                f"  track   subscribed to the processed track {publication.name!r} of {participant.identity}"
            )
            task = asyncio.create_task(self._count(track))
            self._tasks.add(task)

    async def _count(self, track: rtc.Track) -> None:
        stream = rtc.VideoStream(track)
        try:
            async for _ in stream:
                self.processed_frames += 1
        finally:
            await stream.aclose()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


LogLevel = Literal["debug", "info", "warning", "error"]


async def run_demo(seconds: float, log_level: LogLevel = "warning") -> int:
    devserver = DevServer(port=0, keys={KEY: SECRET}, departure_timeout=0.5)
    await devserver.start()
    # The workers log as the supervisor does (they set up their own logging from these settings).
    settings = Settings(
        livekit_url=devserver.url,
        api_key=KEY,
        api_secret=SECRET,
        status_interval=1.0,
        log_level=log_level,
        log_format="text",
    )
    server = build_server(settings)
    ended: list[RunningJob] = []
    server.job_ended.append(ended.append)
    serving = asyncio.create_task(server.run())
    room_name = f"demo-{uuid.uuid4().hex[:6]}"
    publisher, viewer = rtc.Room(), rtc.Room()
    listener = Listener(viewer)
    try:
        await asyncio.wait_for(server.registered.wait(), 60)
        print(
            f"framepool demo: dev server {devserver.url}, agent registered, room {room_name}, {seconds:.0f} s"
        )
        await viewer.connect(devserver.url, token("listener", room_name))
        await publisher.connect(devserver.url, token("publisher", room_name))
        await publish(publisher, seconds)
        stats = {job.id: job.ctx.session.stats() for job in server.jobs.values()}
    finally:
        await publisher.disconnect()
        await viewer.disconnect()
        await listener.aclose()
        server.stop()
        await asyncio.gather(serving, return_exceptions=True)
        await devserver.aclose()
    return summary(listener, stats, ended)


def summary(listener: Listener, stats: dict[str, Any], ended: list[RunningJob]) -> int:
    print("\nsummary")
    for topic, count in sorted(listener.results.items()):
        print(f"  {count:6d} data messages on topic {topic!r}")
    print(
        f"  {listener.processed_frames:6d} frames received on the processed track "
        f"{listener.processed_track!r}"
    )
    for job_id, job_stats in stats.items():
        print(f"  job {job_id}: {job_stats}")
    for job in ended:
        print(f"  job {job.id} ended: {'success' if not job.error else job.error}")
    ok = bool(listener.results) and listener.processed_frames > 0 and all(not job.error for job in ended)
    print("  demo OK" if ok else "  demo FAILED: no results or no processed frames")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framepool.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="How long the publisher sends media.")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    setup_logging(args.log_level, "text")
    warnings.filterwarnings("ignore", message="The HMAC key is")  # the dev server's well-known short secret
    try:
        return framepool_loop.run(run_demo(args.seconds, args.log_level))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
