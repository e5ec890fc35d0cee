"""The live demo: dev server + framepool agent + a synthetic publisher + voters + a listener (one process,
supervisor side; the agent's workers and its bridge process are its children).

`python -m framepool.demo [--seconds 20]` starts the loopback LiveKit dev server, a webhook receiver on
loopback, an AgentServer with one automatic agent (audio-level on the microphone, video-motion and a luma
negative on the camera, and the live poll's data flow of `framepool.demo.poll`, bridged to the webhook), a
publisher sending a tone and the moving test pattern of `framepool.demo.samples`, four voters, and a
listener that prints the results and tallies the agent publishes and counts the frames of the processed
video track. At the end everything shuts down in order and a summary is printed; the exit status is 0 only if
results and processed frames arrived, the final tally matched the votes and every vote reached the webhook
with a valid signature.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import tempfile
import time
import uuid
import warnings
from typing import Any, Literal

from livekit import api, rtc

from framepool import loop as framepool_loop
from framepool.agent.job import JobContext, RunningJob
from framepool.agent.outputs import DataOutput, TrackOutput
from framepool.agent.server import AgentServer, pool_load
from framepool.dataflow.pipeline import load_dataflow
from framepool.demo.poll import POLL, VOTES, PollOutcome, TallyListener, VoteReceiver, expected_tally, vote
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
        ctx.run_dataflow(load_dataflow(POLL))  # the live poll: tally published, every vote to the webhook

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
        if (packet.topic or "").startswith("poll"):
            return  # the poll's tallies: TallyListener's
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
    receiver = VoteReceiver()
    await receiver.start()
    try:
        with tempfile.TemporaryDirectory(prefix="framepool-demo-spool-") as spool_dir:
            # The workers log as the supervisor does (they set up their own logging from these settings).
            settings = Settings(
                livekit_url=devserver.url,
                api_key=KEY,
                api_secret=SECRET,
                status_interval=1.0,
                log_level=log_level,
                log_format="text",
                sinks=[receiver.sink()],
                spool_dir=spool_dir,
            )
            return await run_room(settings, seconds, receiver)
    finally:
        await receiver.stop()
        await devserver.aclose()


async def run_room(settings: Settings, seconds: float, receiver: VoteReceiver) -> int:
    server = build_server(settings)
    ended: list[RunningJob] = []
    server.job_ended.append(ended.append)
    serving = asyncio.create_task(server.run())
    room_name = f"demo-{uuid.uuid4().hex[:6]}"
    publisher, viewer = rtc.Room(), rtc.Room()
    voters = {identity: rtc.Room() for identity in dict(VOTES)}
    listener = Listener(viewer)
    poll = PollOutcome(receiver, TallyListener(viewer))
    stats: dict[str, Any] = {}
    try:
        await asyncio.wait_for(server.registered.wait(), 60)
        print(
            f"framepool demo: dev server {settings.livekit_url}, agent registered, room {room_name}, "
            f"{seconds:.0f} s; votes bridged to the webhook {receiver.url}"
        )
        for identity, room in [("listener", viewer), ("publisher", publisher), *voters.items()]:
            await room.connect(settings.livekit_url, token(identity, room_name))
        agent = await asyncio.wait_for(agent_identity(viewer), 30)
        await asyncio.gather(publish(publisher, seconds), vote(voters, agent, seconds * 0.5 / len(VOTES)))
        poll.completed = await settled(poll)
        stats = {job.id: job_stats(job.ctx) for job in server.jobs.values()}
    finally:
        for room in [publisher, viewer, *voters.values()]:
            await room.disconnect()
        await listener.aclose()
        server.stop()
        await asyncio.gather(serving, return_exceptions=True)
    return summary(listener, stats, ended, poll)


async def agent_identity(room: rtc.Room) -> str:
    """The identity of the agent in `room`, once it has joined."""
    joined = asyncio.Event()
    room.on("participant_connected", lambda participant: joined.set())
    while True:
        for participant in room.remote_participants.values():
            if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                return participant.identity
        joined.clear()
        await joined.wait()


async def settled(poll: PollOutcome, within: float = 15.0) -> bool:
    """Wait for the final tally (topic and attribute) and every vote at the webhook; False at the deadline."""
    waits = [poll.listener.wait_for(expected_tally()), poll.receiver.wait_for(len(VOTES))]
    try:
        await asyncio.wait_for(asyncio.gather(*waits), within)
    except TimeoutError:
        return False
    return True


def job_stats(ctx: JobContext) -> dict[str, Any]:
    figures: dict[str, Any] = dict(ctx.session.stats())
    for plane in ctx.dataplanes:
        figures.update({f"dataflow_{name}": count for name, count in sorted(plane.counters.items())})
    return figures


def summary(listener: Listener, stats: dict[str, Any], ended: list[RunningJob], poll: PollOutcome) -> int:
    print("\nsummary")
    for topic, count in sorted(listener.results.items()):
        print(f"  {count:6d} data messages on topic {topic!r}")
    print(
        f"  {listener.processed_frames:6d} frames received on the processed track "
        f"{listener.processed_track!r}"
    )
    poll_ok = poll.report()
    for job_id, figures in stats.items():
        print(f"  job {job_id}: {figures}")
    for job in ended:
        print(f"  job {job.id} ended: {'success' if not job.error else job.error}")
    media_ok = bool(listener.results) and listener.processed_frames > 0
    ok = media_ok and poll_ok and all(not job.error for job in ended)
    if ok:
        print("  demo OK")
    else:
        print(f"  demo FAILED: {'media results' if not media_ok else 'the poll'} (see above)")
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
