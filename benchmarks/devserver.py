"""Benchmark of the loopback LiveKit dev server with real livekit SDK participants (runs in the benchmark
process; the dev server runs in a child process so its CPU is measured on its own).

Phases, all in one run against one `python -m framepool.devserver` on a free loopback port:

- baseline: the machine's busy CPU before anything starts; a bare HTTP round trip (GET /rtc/validate on a
  fresh connection: TCP + token check) and a bare signal join (websocket to /rtc until the JoinResponse, no
  WebRTC).
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
from dataclasses import asdict
from typing import Any

import aiohttp
import numpy as np
import psutil
from livekit import rtc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The helper module sits beside this script (benchmarks/ is not a package).
from _devserver_capacity import DELIVERY_TARGET, Plan, inbound_streams, measure_capacity
from _devserver_sdk import (
    SAMPLE_RATE,
    TIMEOUT,
    BenchmarkError,
    CpuMeter,
    DevServerProcess,
    connect,
    publish_audio,
    room_name,
    summary_ms,
    token,
    tone,
)

BURST_PERIOD_FRAMES = (
    50  # 0.5 s between bursts: longer than any plausible latency, so matching is unambiguous
)
BURST_FRAMES = 2
ONSET_THRESHOLD = 3000
LATENCY_QUEUE_MS = 20


FULL = Plan(
    joins=20,
    bursts=24,
    window=5.0,
    settle=1.5,
    audio_steps=[1, 2, 4, 8, 12, 16, 24, 32, 48],
    video_steps=[1, 2, 3, 4, 6],
    fps=15.0,
    budget=220.0,
)
QUICK = Plan(
    joins=6,
    bursts=8,
    window=2.0,
    settle=1.0,
    audio_steps=[1, 4, 8],
    video_steps=[1, 2],
    fps=15.0,
    budget=55.0,
)


def first_track(sdk_room: rtc.Room) -> asyncio.Future[rtc.Track]:
    """A future resolved with the first track `sdk_room` subscribes to (register before connecting)."""
    future: asyncio.Future[rtc.Track] = asyncio.get_running_loop().create_future()

    def on_subscribed(track: rtc.Track, *_: Any) -> None:
        if not future.done():
            future.set_result(track)

    sdk_room.on("track_subscribed", on_subscribed)
    return future


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
            async with session.ws_connect(
                f"{server.url}/rtc?protocol=16&auto_subscribe=1", headers=headers
            ) as ws:
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
            subscribed = first_track(joiner)
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
    """Silence in 10 ms frames with a 1 kHz burst every BURST_PERIOD_FRAMES, each burst's hand-over time
    recorded."""
    samples = SAMPLE_RATE // 100
    burst = (16000 * np.sin(2 * np.pi * 1000 * np.arange(samples * BURST_FRAMES) / SAMPLE_RATE)).astype(
        np.int16
    )
    frame_index = 0
    warmup_frames = 100  # a second of silence so the subscriber's stream runs before the first burst
    while (
        len(sends) < bursts or (frame_index - warmup_frames) % BURST_PERIOD_FRAMES < BURST_PERIOD_FRAMES - 1
    ):
        frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, samples)
        position = (frame_index - warmup_frames) % BURST_PERIOD_FRAMES
        if frame_index >= warmup_frames and position < BURST_FRAMES and len(sends) < bursts + (position > 0):
            np.frombuffer(frame.data, dtype=np.int16)[:] = burst[
                position * samples : (position + 1) * samples
            ]
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
    subscribed = first_track(listener)
    source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=LATENCY_QUEUE_MS)
    await publish_audio(speaker, source, "clicks")
    stream = rtc.AudioStream(
        await asyncio.wait_for(subscribed, TIMEOUT), sample_rate=SAMPLE_RATE, num_channels=1
    )
    sends: list[float] = []
    onsets: list[float] = []
    listening = asyncio.create_task(find_onsets(stream, onsets))
    try:
        await asyncio.wait_for(burst_feed(source, sends, bursts), TIMEOUT + bursts)
        jitter_ms = [
            1e3 * s.jitter_buffer_delay / s.jitter_buffer_emitted_count
            for s in (await inbound_streams(listener)).values()
            if s.jitter_buffer_emitted_count
        ]
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await stream.aclose()
        await speaker.disconnect()
        await listener.disconnect()
    latencies = match_latencies(sends, onsets)
    # The subscriber's jitter buffer is the part of the latency the SDK itself reports (mean over the stream).
    return {
        "bursts_sent": len(sends),
        "bursts_detected": len(latencies),
        "audio_source_queue_ms": LATENCY_QUEUE_MS,
        "subscriber_jitter_buffer_ms": round(jitter_ms[0], 1) if jitter_ms else None,
        **summary_ms(latencies),
    }


# --- run and report ---------------------------------------------------------------------------------------


def environment(idle_cores: float) -> dict[str, Any]:
    from importlib.metadata import version

    with open("/proc/cpuinfo") as cpuinfo:
        model = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
            platform.processor(),
        )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
        "cpu": model,
        "cpus": psutil.cpu_count(),
        "idle_machine_busy_cores": idle_cores,
        "load_avg_1m": os.getloadavg()[0],
        **{package: version(package) for package in ("livekit", "aiortc", "av")},
    }


async def timed_phase(meter: CpuMeter, phase: Any) -> dict[str, Any]:
    meter.mark()
    result: dict[str, Any] = await phase
    return {**result, "cpu_cores": asdict(meter.since())}


PHASES = ("join", "latency", "audio", "video")


async def run(plan: Plan, phases: set[str]) -> dict[str, Any]:
    started = time.monotonic()
    idle = await idle_cpu(1.0)
    server = DevServerProcess()
    await server.start()
    try:
        meter = CpuMeter(server)
        results: dict[str, Any] = {"server_idle": await timed_phase(meter, asyncio.sleep(1.0, {}))}
        results["baseline"] = {
            "http_round_trip": summary_ms(await http_round_trips(server, plan.joins)),
            "signal_join": summary_ms(await signal_joins(server, plan.joins)),
        }
        if "join" in phases:
            results["join"] = await timed_phase(meter, measure_joins(server, plan.joins))
        if "latency" in phases:
            results["latency"] = await timed_phase(meter, measure_latency(server, plan.bursts))
        if "audio" in phases:
            audio_deadline = started + plan.budget * (0.6 if "video" in phases else 1.0)
            results["audio_capacity"] = await measure_capacity(server, "audio", plan, meter, audio_deadline)
        if "video" in phases:
            results["video_capacity"] = await measure_capacity(
                server, "video", plan, meter, started + plan.budget
            )
    finally:
        await server.stop()
    results["ratios"] = ratios(results)
    results["conditions"] = {
        "window_s": plan.window,
        "video": f"1280x720 I420 at {plan.fps:g} fps, default publish options (simulcast)",
        "audio": "48 kHz mono tone, 10 ms capture frames, subscriber AudioStream of 20 ms frames",
        "delivery_target": DELIVERY_TARGET,
        "duration_s": round(time.monotonic() - started, 1),
    }
    return {"env": environment(idle), "results": results}


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
        if "median_ms" not in a or not b.get("median_ms"):
            return None
        return round(float(a["median_ms"]) / float(b["median_ms"]), 2)

    base, join, latency = results["baseline"], results.get("join"), results.get("latency", {})
    found: dict[str, float | None] = {}
    if join:
        found["join_connect_vs_signal_join"] = ratio(join["connect"], base["signal_join"])
        found["join_connect_vs_http_round_trip"] = ratio(join["connect"], base["http_round_trip"])
        found["first_track_vs_signal_join"] = ratio(join["first_track_subscribed"], base["signal_join"])
    if latency.get("median_ms") and latency.get("subscriber_jitter_buffer_ms"):
        found["audio_latency_vs_subscriber_jitter_buffer"] = round(
            latency["median_ms"] / latency["subscriber_jitter_buffer_ms"], 2
        )
    return found


def print_table(report: dict[str, Any]) -> None:
    env, results = report["env"], report["results"]
    print(
        f"dev server benchmark, {env['date']}, {env['cpus']} CPUs ({env['cpu']}), "
        f"machine busy before start: {env['idle_machine_busy_cores']:.2f} cores"
    )
    for name in ("http_round_trip", "signal_join"):
        print(f"  baseline {name:<22} {fmt(results['baseline'][name])}")
    if "join" in results:
        print(f"  join connect()               {fmt(results['join']['connect'])}")
        print(f"  join to first track          {fmt(results['join']['first_track_subscribed'])}")
    if "latency" in results:
        latency = results["latency"]
        print(
            f"  audio latency                {fmt(latency)}  ({latency['bursts_detected']}/"
            f"{latency['bursts_sent']} bursts; "
            f"subscriber jitter buffer {latency['subscriber_jitter_buffer_ms']} ms)"
        )
    for kind in ("audio", "video"):
        capacity = results.get(f"{kind}_capacity")
        if capacity is None:
            continue
        bound = "≥ " if capacity["capacity_is_lower_bound"] else ""
        print(f"  {kind} publishers carried     {bound}{capacity['capacity']}  ({capacity['stopped']})")
        for step in capacity["steps"]:
            cpu = step.get("cpu_cores", {})
            print(
                f"    n={step['publishers']:<3} delivered {step.get('delivered', '-')!s:<7} "
                f"cores: server {cpu.get('server', '-')} (loop {cpu.get('server_loop', '-')}) "
                f"bench {cpu.get('bench', '-')} (loop {cpu.get('bench_loop', '-')}) "
                f"others {cpu.get('others', '-')}"
                f"  [{step.get('busiest', step.get('error', ''))}]"
            )
    print("  ratios: " + ", ".join(f"{k} {v}" for k, v in results["ratios"].items()))


def fmt(summary: dict[str, Any]) -> str:
    if not summary.get("n"):
        return "no samples"
    return f"median {summary['median_ms']:8.1f} ms  p90 {summary['p90_ms']:8.1f} ms  (n={summary['n']})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Join time, audio latency and capacity of the loopback dev server."
    )
    parser.add_argument("--quick", action="store_true", help="a shorter run (< 60 s), noisier")
    parser.add_argument("--json", action="store_true", help="print one JSON object {env, results}")
    parser.add_argument("--fps", type=float, default=15.0, help="video frame rate of each 720p publisher")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}"
    )
    args = parser.parse_args()
    phases = set(args.phases.split(",")) if args.phases else set()
    if not phases or not phases <= set(PHASES):
        parser.error(f"--phases takes a comma-separated subset of {','.join(PHASES)}, got {args.phases!r}")
    if not 1 <= args.fps <= 60:
        parser.error("--fps must be between 1 and 60")
    plan = QUICK if args.quick else FULL
    plan.fps = args.fps
    try:
        report = asyncio.run(run(plan, phases))
    except (BenchmarkError, TimeoutError, rtc.ConnectError) as exc:
        print(
            f"benchmarks/devserver.py: {type(exc).__name__}: {getattr(exc, 'message', exc) or 'timed out'}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
