"""Benchmark of the loopback LiveKit dev server with real livekit SDK participants (runs in the benchmark process;
the dev server runs in a child process so its CPU is measured on its own).

Phases, all in one run against one `python -m framepool.devserver` on a free loopback port:

- baseline: the machine's busy CPU before anything starts; a bare HTTP round trip (GET /rtc/validate on a fresh
  connection: TCP + token check) and a bare signal join (websocket to /rtc until the JoinResponse, no WebRTC).
- join: N sequential `rtc.Room.connect()` into a room where one participant publishes audio; wall time of
  connect() and of connect() start to the first `track_subscribed`.
- latency: a 48 kHz mono AudioSource publishes silence with a 1 kHz burst every 0.5 s; the subscriber's
  AudioStream finds each burst's onset. Latency = onset sample time at the subscriber (its frame's delivery
  minus the samples after it) - the time the burst frame was handed to capture_frame. Includes the SDK's own
  buffering on both sides (AudioSource queue, Opus, jitter buffer) and the server's decode/re-encode.
- capacity: publishers join one by one (each its own rtc.Room in this process) while one subscriber counts
  what arrives per track over a measurement window; the largest N where every track delivers >= 99 %.
  Audio: AudioStream frames per track, frames carrying the tone's energy, and 1 - concealed/received samples
  from the subscriber's inbound-rtp stats (the SDK's playout timer emits frames even when packets are lost,
  so a frame count alone cannot see loss). Video: 720p VideoSource at --fps, default publish options
  (simulcast), every frame stamped with its index; delivered = distinct indices / index span.

    python benchmarks/devserver.py [--quick] [--json]

--json prints one object {"env": {...}, "results": {...}}; every CPU figure is in cores (1.0 = one core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import numpy as np
import psutil
from livekit import rtc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The helper module sits beside this script (benchmarks/ is not a package).
from _lk import (
    SAMPLE_RATE,
    BenchmarkError,
    CpuMeter,
    CpuShare,
    DevServerProcess,
    read_index,
    summary_ms,
    token,
    tone,
    video_feed,
)

TIMEOUT = 20.0
DELIVERY_TARGET = 0.99
BURST_PERIOD_FRAMES = 50  # 0.5 s between bursts: longer than any plausible latency, so matching is unambiguous
BURST_FRAMES = 2
ONSET_THRESHOLD = 3000
LATENCY_QUEUE_MS = 20


@dataclass
class Plan:
    joins: int
    bursts: int
    window: float
    settle: float
    audio_steps: list[int]
    video_steps: list[int]
    fps: float
    budget: float


FULL = Plan(joins=20, bursts=24, window=5.0, settle=1.5, audio_steps=[1, 2, 4, 8, 12, 16, 24, 32, 48],
            video_steps=[1, 2, 3, 4, 6], fps=15.0, budget=220.0)
QUICK = Plan(joins=6, bursts=8, window=2.0, settle=1.0, audio_steps=[1, 4, 8], video_steps=[1, 2], fps=15.0,
             budget=55.0)


def room_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def connect(server: DevServerProcess, identity: str, room: str) -> rtc.Room:
    sdk_room = rtc.Room()
    await asyncio.wait_for(sdk_room.connect(server.url, token(identity, room)), TIMEOUT)
    return sdk_room


async def publish_audio(sdk_room: rtc.Room, source: rtc.AudioSource, name: str) -> None:
    track = rtc.LocalAudioTrack.create_audio_track(name, source)
    await asyncio.wait_for(sdk_room.local_participant.publish_track(track), TIMEOUT)


# --- baseline ---------------------------------------------------------------------------------------------

async def idle_cpu(seconds: float) -> float:
    """Cores busy on this machine before the benchmark starts anything (other users of the machine)."""
    meter = CpuMeter(None)
    await asyncio.sleep(seconds)
    return meter.since().machine_busy


async def http_round_trips(server: DevServerProcess, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token('probe', 'baseline')}"}
    times = []
    for _ in range(n + 1):  # the first one warms the server's token path and is not counted
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            start = time.perf_counter()
            async with session.get(f"{server.http_url}/rtc/validate", headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise BenchmarkError(f"/rtc/validate answered {response.status}")
            times.append(time.perf_counter() - start)
    return times[1:]


async def signal_joins(server: DevServerProcess, n: int) -> list[float]:
    """Websocket join on the classic path until the first server message (the JoinResponse), then leave."""
    times = []
    room = room_name("ws")
    for i in range(n + 1):
        headers = {"Authorization": f"Bearer {token(f'ws-{i}', room)}"}
        async with aiohttp.ClientSession() as session:
            start = time.perf_counter()
            async with session.ws_connect(f"{server.url}/rtc?protocol=16&auto_subscribe=1", headers=headers) as ws:
                message = await asyncio.wait_for(ws.receive(), TIMEOUT)
                times.append(time.perf_counter() - start)
                if message.type != aiohttp.WSMsgType.BINARY:
                    raise BenchmarkError(f"signal join answered {message.type.name}, not a JoinResponse")
    return times[1:]


# --- join time --------------------------------------------------------------------------------------------

async def measure_joins(server: DevServerProcess, n: int) -> dict[str, Any]:
    room = room_name("join")
    publisher = await connect(server, "speaker", room)
    source = rtc.AudioSource(SAMPLE_RATE, 1)
    await publish_audio(publisher, source, "mic")
    feeding = asyncio.create_task(tone(source, 440.0, 8000))
    connects, first_tracks = [], []
    try:
        for i in range(n + 1):  # the first join warms the SDK and the server; not counted
            joiner = rtc.Room()
            subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            joiner.on("track_subscribed", lambda *_, f=subscribed: f.done() or f.set_result(None))
            start = time.perf_counter()
            await asyncio.wait_for(joiner.connect(server.url, token(f"joiner-{i}", room)), TIMEOUT)
            connected = time.perf_counter()
            await asyncio.wait_for(subscribed, TIMEOUT)
            if i:
                connects.append(connected - start)
                first_tracks.append(time.perf_counter() - start)
            await joiner.disconnect()
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        await publisher.disconnect()
    return {"connect": summary_ms(connects), "first_track_subscribed": summary_ms(first_tracks)}


# --- audio latency ----------------------------------------------------------------------------------------

async def burst_feed(source: rtc.AudioSource, sends: list[float], bursts: int) -> None:
    """Silence in 10 ms frames with a 1 kHz burst every BURST_PERIOD_FRAMES, each burst's hand-over time recorded."""
    samples = SAMPLE_RATE // 100
    burst = (16000 * np.sin(2 * np.pi * 1000 * np.arange(samples * BURST_FRAMES) / SAMPLE_RATE)).astype(np.int16)
    frame_index = 0
    warmup_frames = 100  # a second of silence so the subscriber's stream runs before the first burst
    while len(sends) < bursts or (frame_index - warmup_frames) % BURST_PERIOD_FRAMES < BURST_PERIOD_FRAMES - 1:
        frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, samples)
        position = (frame_index - warmup_frames) % BURST_PERIOD_FRAMES
        if frame_index >= warmup_frames and position < BURST_FRAMES and len(sends) < bursts + (position > 0):
            np.frombuffer(frame.data, dtype=np.int16)[:] = burst[position * samples:(position + 1) * samples]
            if position == 0:
                sends.append(time.monotonic())
        await source.capture_frame(frame)
        frame_index += 1


async def find_onsets(stream: rtc.AudioStream, onsets: list[float]) -> None:
    refractory = BURST_PERIOD_FRAMES / 100 / 2
    async for event in stream:
        received = time.monotonic()
        data = np.frombuffer(event.frame.data, dtype=np.int16)
        loud = np.flatnonzero(np.abs(data.astype(np.int32)) > ONSET_THRESHOLD)
        if loud.size:
            onset = received - (data.size - loud[0]) / event.frame.sample_rate
            if not onsets or onset - onsets[-1] > refractory:
                onsets.append(onset)


def match_latencies(sends: list[float], onsets: list[float]) -> list[float]:
    """Each onset against the latest burst sent before it (bursts are further apart than any latency)."""
    latencies = []
    for onset in onsets:
        earlier = [sent for sent in sends if sent <= onset]
        if earlier:
            latencies.append(onset - earlier[-1])
    return latencies


async def measure_latency(server: DevServerProcess, bursts: int) -> dict[str, Any]:
    room = room_name("latency")
    speaker, listener = await connect(server, "speaker", room), await connect(server, "listener", room)
    subscribed: asyncio.Future[rtc.Track] = asyncio.get_running_loop().create_future()
    listener.on("track_subscribed", lambda track, *_: subscribed.done() or subscribed.set_result(track))
    source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=LATENCY_QUEUE_MS)
    await publish_audio(speaker, source, "clicks")
    stream = rtc.AudioStream(await asyncio.wait_for(subscribed, TIMEOUT), sample_rate=SAMPLE_RATE, num_channels=1)
    sends: list[float] = []
    onsets: list[float] = []
    listening = asyncio.create_task(find_onsets(stream, onsets))
    try:
        await asyncio.wait_for(burst_feed(source, sends, bursts), TIMEOUT + bursts)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await stream.aclose()
        await speaker.disconnect()
        await listener.disconnect()
    latencies = match_latencies(sends, onsets)
    return {"bursts_sent": len(sends), "bursts_detected": len(latencies), "audio_source_queue_ms": LATENCY_QUEUE_MS,
            **summary_ms(latencies)}


# --- capacity ---------------------------------------------------------------------------------------------

@dataclass
class TrackCount:
    """What the subscriber saw of one track: frame arrivals and, per frame, whether it carried the content."""

    frames: int = 0
    good: int = 0
    indices: list[tuple[float, int]] = field(default_factory=list)
    sizes: set[tuple[int, int]] = field(default_factory=set)


async def count_audio(track: rtc.Track, count: TrackCount, expected_rms: float) -> None:
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=20)
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


AUDIO_AMPLITUDE = 8000


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
        publisher = await connect(self.server, f"{self.kind}-{index}", self.room)
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


async def playout_samples(sink: rtc.Room) -> dict[str, tuple[int, int]]:
    """Per track sid: (concealed, received) samples from the subscriber's inbound-rtp audio stats."""
    stats = await sink.get_rtc_stats()
    found: dict[str, tuple[int, int]] = {}
    for entry in [*stats.publisher_stats, *stats.subscriber_stats]:
        if entry.WhichOneof("stats") != "inbound_rtp" or entry.inbound_rtp.stream.kind != "audio":
            continue
        inbound = entry.inbound_rtp.inbound
        # The dev server names each downstream track "<track sid>.<suffix>" (its msid).
        sid = inbound.track_identifier.split(".")[0]
        found[sid] = (inbound.concealed_samples, inbound.total_samples_received)
    return found


def audio_delivery(ramp: Ramp, before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, Any]:
    frame_ratios, content_ratios, playout_ratios = [], [], []
    for sid, count in ramp.counts.items():
        frames = count.frames - before["frames"].get(sid, (0, 0))[0]
        good = count.good - before["frames"].get(sid, (0, 0))[1]
        frame_ratios.append(frames / (seconds / 0.02))
        content_ratios.append(good / frames if frames else 0.0)
        if sid in after["playout"] and sid in before["playout"]:
            concealed = after["playout"][sid][0] - before["playout"][sid][0]
            received = after["playout"][sid][1] - before["playout"][sid][1]
            playout_ratios.append(1.0 - concealed / received if received else 0.0)
    worst = {"frames_vs_expected": min(frame_ratios), "frames_with_tone": min(content_ratios),
             "not_concealed": min(playout_ratios) if playout_ratios else None}
    delivered = min(worst["frames_with_tone"], worst["not_concealed"] if playout_ratios else 1.0)
    return {"worst_track": {k: (round(v, 4) if v is not None else None) for k, v in worst.items()},
            "delivered": round(delivered, 4)}


def video_delivery(ramp: Ramp, start: float, end: float) -> dict[str, Any]:
    ratios, rates = [], []
    sizes: set[tuple[int, int]] = set()
    for count in ramp.counts.values():
        seen = {index for at, index in count.indices if start <= at < end}
        span = (max(seen) - min(seen) + 1) if seen else 1
        ratios.append(len(seen) / span if seen else 0.0)
        rates.append(len(seen) / (end - start))
        sizes |= count.sizes
    return {"delivered": round(min(ratios), 4), "worst_track_fps": round(min(rates), 2),
            "received_sizes": sorted(f"{w}x{h}" for w, h in sizes)}


async def ramp_snapshot(ramp: Ramp) -> dict[str, Any]:
    assert ramp.sink is not None
    frames = {sid: (c.frames, c.good) for sid, c in ramp.counts.items()}
    return {"frames": frames, "playout": await playout_samples(ramp.sink) if ramp.kind == "audio" else {}}


async def measure_step(ramp: Ramp, n: int, plan: Plan, meter: CpuMeter) -> dict[str, Any]:
    await ramp.grow(n)
    await asyncio.sleep(plan.settle)  # let jitter buffers and bandwidth estimates settle after the join
    before = await ramp_snapshot(ramp)
    meter.mark()
    start = time.monotonic()
    await asyncio.sleep(plan.window)
    end = time.monotonic()
    cpu = meter.since()
    if ramp.kind == "audio":
        delivery = audio_delivery(ramp, before, await ramp_snapshot(ramp), end - start)
    else:
        delivery = video_delivery(ramp, start, end)
    return {"publishers": n, **delivery, "ok": delivery["delivered"] >= DELIVERY_TARGET, "cpu_cores": asdict(cpu),
            "busiest": busiest(cpu)}


def busiest(cpu: CpuShare) -> str:
    """Which process used the most CPU, and whether the machine was saturated."""
    name, cores = max([("server", cpu.server), ("benchmark", cpu.bench), ("others", cpu.others)], key=lambda p: p[1])
    saturated = cpu.machine_busy >= 0.9 * (psutil.cpu_count() or 1)
    return f"{name} ({cores:.2f} cores){', machine saturated' if saturated else ''}"


async def measure_capacity(server: DevServerProcess, kind: str, plan: Plan, meter: CpuMeter,
                           deadline: float) -> dict[str, Any]:
    ramp = Ramp(server, kind, plan.fps)
    steps: list[dict[str, Any]] = []
    stopped = "ramp finished"
    try:
        await ramp.open()
        for n in plan.audio_steps if kind == "audio" else plan.video_steps:
            if time.monotonic() + plan.settle + plan.window + 2 * (n - len(ramp.publishers)) > deadline:
                stopped = "time budget reached"
                break
            try:
                steps.append(await measure_step(ramp, n, plan, meter))
            except TimeoutError:
                steps.append({"publishers": n, "ok": False, "error": "tracks did not all reach the subscriber"})
            if not steps[-1]["ok"]:
                stopped = "failed"
                break
    finally:
        await ramp.close()
    # The ramp stops at the first failing step, so every earlier step passed.
    passing = [step["publishers"] for step in steps if step["ok"]]
    return {"capacity": passing[-1] if passing else 0, "capacity_is_lower_bound": stopped != "failed",
            "stopped": stopped, "steps": steps}


# --- run and report ---------------------------------------------------------------------------------------

def environment(idle_cores: float) -> dict[str, Any]:
    from importlib.metadata import version
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                     platform.processor())
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(), "cpu": model,
            "cpus": psutil.cpu_count(), "idle_machine_busy_cores": idle_cores, "load_avg_1m": os.getloadavg()[0],
            **{package: version(package) for package in ("livekit", "aiortc", "av")}}


async def timed_phase(meter: CpuMeter, phase: Any) -> dict[str, Any]:
    meter.mark()
    result: dict[str, Any] = await phase
    return {**result, "cpu_cores": asdict(meter.since())}


async def run(plan: Plan) -> dict[str, Any]:
    started = time.monotonic()
    idle = await idle_cpu(1.0)
    server = DevServerProcess()
    await server.start()
    try:
        meter = CpuMeter(server)
        results: dict[str, Any] = {"server_idle": await timed_phase(meter, asyncio.sleep(1.0, {}))}
        results["baseline"] = {"http_round_trip": summary_ms(await http_round_trips(server, plan.joins)),
                               "signal_join": summary_ms(await signal_joins(server, plan.joins))}
        results["join"] = await timed_phase(meter, measure_joins(server, plan.joins))
        results["latency"] = await timed_phase(meter, measure_latency(server, plan.bursts))
        audio_deadline = started + plan.budget * 0.6
        results["audio_capacity"] = await measure_capacity(server, "audio", plan, meter, audio_deadline)
        results["video_capacity"] = await measure_capacity(server, "video", plan, meter, started + plan.budget)
    finally:
        await server.stop()
    results["ratios"] = ratios(results)
    results["conditions"] = {"window_s": plan.window, "video": f"1280x720 I420 at {plan.fps:g} fps, default "
                             "publish options (simulcast)", "audio": "48 kHz mono tone, 10 ms capture frames, "
                             "subscriber AudioStream of 20 ms frames", "delivery_target": DELIVERY_TARGET,
                             "duration_s": round(time.monotonic() - started, 1)}
    return {"env": environment(idle), "results": results}


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
        if "median_ms" not in a or not b.get("median_ms"):
            return None
        return round(a["median_ms"] / b["median_ms"], 2)
    base = results["baseline"]
    return {"join_connect_vs_signal_join": ratio(results["join"]["connect"], base["signal_join"]),
            "join_connect_vs_http_round_trip": ratio(results["join"]["connect"], base["http_round_trip"]),
            "first_track_vs_signal_join": ratio(results["join"]["first_track_subscribed"], base["signal_join"]),
            "audio_latency_vs_10ms_frame": round(results["latency"]["median_ms"] / 10.0, 2)
            if "median_ms" in results["latency"] else None}


def print_table(report: dict[str, Any]) -> None:
    env, results = report["env"], report["results"]
    print(f"dev server benchmark, {env['date']}, {env['cpus']} CPUs ({env['cpu']}), "
          f"machine busy before start: {env['idle_machine_busy_cores']:.2f} cores")
    for name in ("http_round_trip", "signal_join"):
        print(f"  baseline {name:<22} {fmt(results['baseline'][name])}")
    print(f"  join connect()               {fmt(results['join']['connect'])}")
    print(f"  join to first track          {fmt(results['join']['first_track_subscribed'])}")
    latency = results["latency"]
    print(f"  audio latency                {fmt(latency)}  ({latency['bursts_detected']}/{latency['bursts_sent']} "
          "bursts detected)")
    for kind in ("audio", "video"):
        capacity = results[f"{kind}_capacity"]
        bound = "≥ " if capacity["capacity_is_lower_bound"] else ""
        print(f"  {kind} publishers carried     {bound}{capacity['capacity']}  ({capacity['stopped']})")
        for step in capacity["steps"]:
            cpu = step.get("cpu_cores", {})
            print(f"    n={step['publishers']:<3} delivered {step.get('delivered', '-')!s:<7} "
                  f"server {cpu.get('server', '-')} bench {cpu.get('bench', '-')} others {cpu.get('others', '-')} "
                  f"cores  {step.get('busiest', step.get('error', ''))}")
    print("  ratios: " + ", ".join(f"{k} {v}" for k, v in results["ratios"].items()))


def fmt(summary: dict[str, Any]) -> str:
    if not summary.get("n"):
        return "no samples"
    return f"median {summary['median_ms']:8.1f} ms  p90 {summary['p90_ms']:8.1f} ms  (n={summary['n']})"


def main() -> int:
    parser = argparse.ArgumentParser(description="Join time, audio latency and capacity of the loopback dev server.")
    parser.add_argument("--quick", action="store_true", help="a shorter run (< 60 s), noisier")
    parser.add_argument("--json", action="store_true", help="print one JSON object {env, results}")
    parser.add_argument("--fps", type=float, default=15.0, help="video frame rate of each 720p publisher")
    args = parser.parse_args()
    if not 1 <= args.fps <= 60:
        parser.error("--fps must be between 1 and 60")
    plan = QUICK if args.quick else FULL
    plan.fps = args.fps
    try:
        report = asyncio.run(run(plan))
    except (BenchmarkError, TimeoutError, rtc.ConnectError) as exc:
        print(f"benchmarks/devserver.py: {type(exc).__name__}: {getattr(exc, 'message', exc) or 'timed out'}",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
