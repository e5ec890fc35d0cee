"""Capacity ramps for benchmarks/devserver.py (runs in the benchmark process): publishers of one kind join a
room one by one while one subscriber counts, per track, what actually arrives.

Audio: the SDK's playout timer makes an AudioStream emit frames whether or not packets arrived (lost packets
are concealed), so the frame count alone cannot see loss. A track counts as delivered by the smaller of: the
share of frames that carry the publisher's tone at at least half its RMS, and 1 - concealed/received samples
from the subscriber's inbound-rtp stats. Video: every frame carries its index (see
_devserver_sdk.stamp_index); delivered = distinct indices seen / index span over the window, so frames dropped
anywhere (publisher encoder, server, subscriber) count, whatever resolution the single relayed simulcast layer
has.

A step that misses the target is measured once more (a second window) before the ramp stops, so one burst of
load from another process on a shared machine does not end the ramp.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import psutil
from _devserver_sdk import (
    SAMPLE_RATE,
    TIMEOUT,
    CpuMeter,
    CpuShare,
    DevServerProcess,
    connect,
    publish_audio,
    read_index,
    room_name,
    token,
    tone,
    video_feed,
)
from livekit import rtc

DELIVERY_TARGET = 0.99
AUDIO_AMPLITUDE = 8000
SUBSCRIBER_FRAME_MS = 20
LOOP_SATURATED = 0.7  # a main thread this busy on average already has stalls of several frames


@dataclass
class Plan:
    """How much to measure: counts, windows in seconds, the ramps' steps and the whole run's time budget."""

    joins: int
    bursts: int
    window: float
    settle: float
    audio_steps: list[int]
    video_steps: list[int]
    fps: float
    budget: float


@dataclass
class TrackCount:
    """What the subscriber saw of one track: frame arrivals and, per frame, whether it carried the content."""

    frames: int = 0
    good: int = 0
    indices: list[tuple[float, int]] = field(default_factory=list)
    sizes: set[tuple[int, int]] = field(default_factory=set)


async def count_audio(track: rtc.Track, count: TrackCount, expected_rms: float) -> None:
    stream = rtc.AudioStream(
        track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=SUBSCRIBER_FRAME_MS
    )
    try:
        async for event in stream:
            data = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float32)
            count.frames += 1
            count.good += bool(np.sqrt(np.mean(data * data)) > 0.5 * expected_rms)
    finally:
        await stream.aclose()


async def count_video(track: rtc.Track, count: TrackCount) -> None:
    stream = rtc.VideoStream(track, format=rtc.VideoBufferType.I420)
    try:
        async for event in stream:
            frame = event.frame
            luma = np.frombuffer(frame.data, dtype=np.uint8, count=frame.width * frame.height)
            count.frames += 1
            count.sizes.add((frame.width, frame.height))
            count.indices.append((time.monotonic(), read_index(luma.reshape(frame.height, frame.width))))
    finally:
        await stream.aclose()


class Ramp:
    """One subscriber counting every track of a room while publishers of one kind join it one by one."""

    def __init__(self, server: DevServerProcess, kind: str, fps: float) -> None:
        self.server, self.kind, self.fps = server, kind, fps
        self.room = room_name(f"ramp-{kind}")
        self.counts: dict[str, TrackCount] = {}
        self.publishers: list[rtc.Room] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.arrived = asyncio.Event()
        self.wanted = 0
        self.sink: rtc.Room | None = None

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _on_track(self, track: rtc.Track, publication: rtc.RemoteTrackPublication, _: Any) -> None:
        count = self.counts.setdefault(publication.sid, TrackCount())
        if self.kind == "audio":
            self._spawn(count_audio(track, count, AUDIO_AMPLITUDE / np.sqrt(2)))
        else:
            self._spawn(count_video(track, count))
        if len(self.counts) >= self.wanted:
            self.arrived.set()

    async def open(self) -> None:
        self.sink = rtc.Room()
        self.sink.on("track_subscribed", self._on_track)
        await asyncio.wait_for(self.sink.connect(self.server.url, token("sink", self.room)), TIMEOUT)

    async def _add_publisher(self) -> None:
        index = len(self.publishers)
        # Publishers subscribe to nothing: the server's load is then N tracks in and N out (to the one
        # subscriber), not N x N as when every publisher also received every other publisher.
        publisher = await connect(self.server, f"{self.kind}-{index}", self.room, subscribe=False)
        self.publishers.append(publisher)
        if self.kind == "audio":
            source = rtc.AudioSource(SAMPLE_RATE, 1)
            await publish_audio(publisher, source, "mic")
            self._spawn(tone(source, 300.0 + 37.0 * index, AUDIO_AMPLITUDE))
        else:
            video = rtc.VideoSource(1280, 720)
            track = rtc.LocalVideoTrack.create_video_track("camera", video)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
            await asyncio.wait_for(publisher.local_participant.publish_track(track, options), TIMEOUT)
            self._spawn(video_feed(video, 1280, 720, self.fps))

    async def grow(self, n: int) -> None:
        """Add publishers up to `n` and wait until the subscriber has every track."""
        while len(self.publishers) < n:
            await self._add_publisher()
        self.wanted = n
        if len(self.counts) < n:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), TIMEOUT)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for sdk_room in [*self.publishers, *([self.sink] if self.sink else [])]:
            await sdk_room.disconnect()


async def inbound_streams(sdk_room: rtc.Room, kind: str = "audio") -> dict[str, Any]:
    """Per inbound `kind` stream of `sdk_room` (keyed by its stats id): its inbound-rtp counters.

    The streams cannot be named by track sid (the SDK reports its own track ids), which is fine: only the
    worst stream matters.
    """
    stats = await sdk_room.get_rtc_stats()
    found: dict[str, Any] = {}
    for entry in [*stats.publisher_stats, *stats.subscriber_stats]:
        if entry.WhichOneof("stats") == "inbound_rtp" and entry.inbound_rtp.stream.kind == kind:
            found[entry.inbound_rtp.rtc.id] = entry.inbound_rtp.inbound
    return found


def audio_delivery(
    ramp: Ramp, before: dict[str, Any], after: dict[str, Any], seconds: float
) -> dict[str, Any]:
    frame_ratios, content_ratios, playout_ratios = [], [], []
    for sid, count in ramp.counts.items():
        frames = count.frames - before["frames"].get(sid, (0, 0))[0]
        good = count.good - before["frames"].get(sid, (0, 0))[1]
        frame_ratios.append(frames / (seconds * 1000 / SUBSCRIBER_FRAME_MS))
        content_ratios.append(good / frames if frames else 0.0)
    for stream_id, inbound in after["inbound"].items():
        earlier = before["inbound"].get(stream_id)
        if earlier is not None:
            concealed = inbound.concealed_samples - earlier.concealed_samples
            received = inbound.total_samples_received - earlier.total_samples_received
            playout_ratios.append(1.0 - concealed / received if received else 0.0)
    worst = {
        "frames_vs_expected": min(frame_ratios),
        "frames_with_tone": min(content_ratios),
        "not_concealed": min(playout_ratios) if playout_ratios else 0.0,
        "inbound_streams": len(playout_ratios),
    }
    delivered = min(worst["frames_with_tone"], worst["not_concealed"])
    return {"worst_track": {k: round(v, 4) for k, v in worst.items()}, "delivered": round(delivered, 4)}


def video_delivery(ramp: Ramp, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Index-based delivery end to end, plus the subscriber's decoder frame rate (from inbound-rtp stats).

    When the index count misses frames the decoder did output, the subscriber SDK's own frame queue dropped
    them (it logs "native video stream queue overflow"): a benchmark-side loss under CPU starvation.
    """
    ratios, rates, decoded = [], [], []
    sizes: set[tuple[int, int]] = set()
    start, end = before["at"], after["at"]
    for count in ramp.counts.values():
        seen = {index for at, index in count.indices if start <= at < end}
        span = (max(seen) - min(seen) + 1) if seen else 1
        ratios.append(len(seen) / span if seen else 0.0)
        rates.append(len(seen) / (end - start))
        sizes |= count.sizes
    for stream_id, inbound in after["inbound"].items():
        if stream_id in before["inbound"]:
            decoded.append(
                (inbound.frames_decoded - before["inbound"][stream_id].frames_decoded) / (end - start)
            )
    return {
        "delivered": round(min(ratios), 4),
        "worst_track_fps": round(min(rates), 2),
        "worst_track_decoded_fps": round(min(decoded), 2) if decoded else None,
        "received_sizes": sorted(f"{w}x{h}" for w, h in sizes),
    }


async def ramp_snapshot(ramp: Ramp) -> dict[str, Any]:
    assert ramp.sink is not None
    frames = {sid: (c.frames, c.good) for sid, c in ramp.counts.items()}
    return {"frames": frames, "inbound": await inbound_streams(ramp.sink, ramp.kind), "at": time.monotonic()}


async def measure_window(ramp: Ramp, seconds: float, meter: CpuMeter) -> dict[str, Any]:
    before = await ramp_snapshot(ramp)
    meter.mark()
    await asyncio.sleep(seconds)
    cpu = meter.since()
    after = await ramp_snapshot(ramp)
    if ramp.kind == "audio":
        delivery = audio_delivery(ramp, before, after, after["at"] - before["at"])
    else:
        delivery = video_delivery(ramp, before, after)
    publishers = len(ramp.publishers)
    return {
        "publishers": publishers,
        **delivery,
        "ok": delivery["delivered"] >= DELIVERY_TARGET,
        "cpu_cores": asdict(cpu),
        "server_cores_per_publisher": round(cpu.server / publishers, 4),
        "busiest": busiest(cpu),
    }


async def measure_step(ramp: Ramp, n: int, plan: Plan, meter: CpuMeter) -> dict[str, Any]:
    """Grow to `n` publishers, settle, measure a window; a miss gets a second window and the better one
    counts."""
    await ramp.grow(n)
    await asyncio.sleep(plan.settle)  # jitter buffers and bandwidth estimates settle after a join
    result = await measure_window(ramp, plan.window, meter)
    if not result["ok"]:
        second = await measure_window(ramp, plan.window, meter)
        result = max(result, second, key=lambda r: float(r["delivered"]))
        result["windows"] = 2
    return result


def busiest(cpu: CpuShare) -> str:
    """Which process used the most CPU, whether an asyncio loop or the machine was saturated."""
    name, cores = max(
        [("server", cpu.server), ("benchmark", cpu.bench), ("others", cpu.others)], key=lambda p: p[1]
    )
    notes = [f"{name} {cores:.2f} cores"]
    for loop, share in (("server", cpu.server_loop), ("benchmark", cpu.bench_loop)):
        if share >= LOOP_SATURATED:
            notes.append(f"{loop} loop {share:.2f}")
    if cpu.machine_busy >= 0.9 * (psutil.cpu_count() or 1):
        notes.append("machine saturated")
    return ", ".join(notes)


async def measure_capacity(
    server: DevServerProcess, kind: str, plan: Plan, meter: CpuMeter, deadline: float
) -> dict[str, Any]:
    ramp = Ramp(server, kind, plan.fps)
    steps: list[dict[str, Any]] = []
    stopped = "ramp finished"
    try:
        await ramp.open()
        for n in plan.audio_steps if kind == "audio" else plan.video_steps:
            if time.monotonic() + plan.settle + 2 * plan.window + 2 * (n - len(ramp.publishers)) > deadline:
                stopped = "time budget reached"
                break
            try:
                steps.append(await measure_step(ramp, n, plan, meter))
            except TimeoutError:
                steps.append(
                    {"publishers": n, "ok": False, "error": "tracks did not all reach the subscriber"}
                )
            if not steps[-1]["ok"]:
                stopped = "failed"
                break
    finally:
        await ramp.close()
    # The ramp stops at the first failing step, so every earlier step passed.
    passing = [step["publishers"] for step in steps if step["ok"]]
    return {
        "capacity": passing[-1] if passing else 0,
        "capacity_is_lower_bound": stopped != "failed",
        "stopped": stopped,
        "steps": steps,
    }
