"""Agent server density: job start latency, marginal memory and CPU per job, vs process-per-job.

    python benchmarks/jobs.py [--jobs 1,4,8] [--seconds 5] [--quick] [--json]

The loopback dev server and the publishers (one SDK room per job, each sending a 48 kHz mono tone) run in
this process; what is measured runs in other processes, so its CPU and memory are its own:

- `framepool`: one `framepool start` daemon (one worker) with a declarative audio agent
  (`audio-level(window_ms=100)`, 10 ms frames), dispatched automatically into every room.
- `baseline`: process-per-job, as LiveKit Agents runs jobs: each job is a separate Python process with
  its own SDK room connection that subscribes to the tone and computes the same RMS level in process,
  publishing the same data messages.

For each level of concurrent jobs it waits until every room delivers results, then measures over
`--seconds`: CPU of the whole process tree (supervisor + workers, or all baseline processes) as % of one
core, PSS of the tree, and the fraction of the expected results (10 per second per job) that arrived. The
marginal cost per extra job is the slope between the smallest and the largest level. Job start latency
(framepool only) is the time from the publisher joining a new room to the first result of its job:
dispatch, availability, assignment, room join, subscription, first frames through the ring.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from livekit import api, rtc

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "devkey", "secret"
RESULTS_PER_SECOND = 10  # audio-level(window_ms=100)


def token(identity: str, room: str, kind: str = "") -> str:
    built = api.AccessToken(KEY, SECRET).with_identity(identity).with_grants(api.VideoGrants(room_join=True, room=room))
    return (built.with_kind(kind) if kind else built).to_jwt()  # type: ignore[arg-type]


# -- the process-per-job baseline: one job per process ------------------------------------------------------


async def baseline_job(url: str, room_name: str) -> None:
    """One job the way a process-per-job framework runs it: own room, own AudioStream, own numpy work."""
    room = rtc.Room()
    done = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def level(track: rtc.Track) -> None:
        stream = rtc.AudioStream.from_track(track=track, sample_rate=48000, num_channels=1, frame_size_ms=10)
        squares, count = 0.0, 0
        async for event in stream:
            samples = np.frombuffer(event.frame.data, np.int16).astype(np.float32)
            squares += float(np.dot(samples, samples))
            count += samples.size
            if count >= 4800:
                rms = 20 * np.log10(max(np.sqrt(squares / count) / 32768, 1e-9))
                await room.local_participant.publish_data(json.dumps({"rms_dbfs": round(float(rms), 2)}), topic="levels")
                squares, count = 0.0, 0

    def on_track(track: rtc.Track, *_: Any) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.add(asyncio.create_task(level(track)))

    room.on("track_subscribed", on_track)
    room.on("disconnected", lambda *_: done.set())
    await room.connect(url, token(f"baseline-{room_name}", room_name, kind="agent"))
    await done.wait()


# -- publishers (in this process) ---------------------------------------------------------------------------


class Publisher:
    """Joins a room, publishes a tone, counts the 'levels' results it receives."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.room = rtc.Room()
        self.results = 0
        self.first_result: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.joined_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.room.on("data_received", self._on_data)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic == "levels":
            self.results += 1
            if not self.first_result.done():
                self.first_result.set_result(time.monotonic())

    async def start(self, url: str) -> None:
        self.joined_at = time.monotonic()
        await self.room.connect(url, token(f"pub-{self.name}", self.name))
        source = rtc.AudioSource(48000, 1)
        await self.room.local_participant.publish_track(rtc.LocalAudioTrack.create_audio_track("tone", source),
                                                        rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        self._task = asyncio.create_task(self._tone(source))

    async def _tone(self, source: rtc.AudioSource) -> None:
        t = np.arange(480)
        n = 0
        while True:
            samples = (3000 * np.sin(2 * np.pi * 440 * (t + n) / 48000)).astype(np.int16)
            await source.capture_frame(rtc.AudioFrame(samples.tobytes(), 48000, 1, 480))
            n += 480

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.room.disconnect()


# -- measurement -------------------------------------------------------------------------------------------


def tree(pids: list[int]) -> list[psutil.Process]:
    processes: list[psutil.Process] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes.extend([root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    return processes


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def pss_bytes(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        try:
            total += int(process.memory_full_info().pss)
        except psutil.NoSuchProcess:
            continue
    return total


async def measure(pids: list[int], publishers: list[Publisher], seconds: float) -> dict[str, float]:
    processes = tree(pids)
    counts = [p.results for p in publishers]
    cpu0, t0 = cpu_seconds(processes), time.monotonic()
    await asyncio.sleep(seconds)  # the measurement window itself, not synchronisation
    elapsed = time.monotonic() - t0
    processes = tree(pids)
    delivered = sum(p.results - c for p, c in zip(publishers, counts, strict=True))
    expected = RESULTS_PER_SECOND * elapsed * len(publishers)
    return {"jobs": len(publishers), "cpu_pct": 100 * (cpu_seconds(processes) - cpu0) / elapsed,
            "pss_mb": pss_bytes(processes) / 2**20, "delivered": delivered / expected if expected else 0.0,
            "processes": len(processes)}


# -- the two systems ---------------------------------------------------------------------------------------


async def run_framepool(url: str, levels: list[int], seconds: float) -> dict[str, Any]:
    config = Path(tempfile.mkdtemp()) / "bench.toml"
    config.write_text(f'livekit_url = "{url}"\napi_key = "{KEY}"\napi_secret = "{SECRET}"\nworkers = 1\n'
                      'load_threshold = 1.0\n[[agents]]\naudio = ["audio-level(window_ms=100)"]\ntopic = "levels"\n')
    env = {**os.environ, "FRAMEPOOL_LOG_FORMAT": "json", "FRAMEPOOL_LOG_LEVEL": "info"}
    daemon = await asyncio.create_subprocess_exec(sys.executable, "-m", "framepool.cli", "start", "--config", str(config),
                                                  cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE)
    assert daemon.stderr is not None
    while b"registered 1 agent" not in (line := await asyncio.wait_for(daemon.stderr.readline(), 60)):
        if not line:
            raise RuntimeError("framepool start exited before registering")
    drain = asyncio.create_task(_discard(daemon.stderr))
    publishers: list[Publisher] = []
    rows, latencies = [], []
    try:
        for level in levels:
            while len(publishers) < level:
                publisher = Publisher(f"fp-{len(publishers)}")
                await publisher.start(url)
                publishers.append(publisher)
                latencies.append(await asyncio.wait_for(publisher.first_result, 60) - publisher.joined_at)
            rows.append(await measure([daemon.pid], publishers, seconds))
    finally:
        for publisher in publishers:
            await publisher.stop()
        daemon.terminate()
        await daemon.wait()
        drain.cancel()
    return {"levels": rows, "start_latency_ms": {"median": 1000 * statistics.median(latencies),
                                                 "max": 1000 * max(latencies), "samples": len(latencies)}}


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def run_baseline(url: str, levels: list[int], seconds: float) -> dict[str, Any]:
    publishers: list[Publisher] = []
    workers: list[asyncio.subprocess.Process] = []
    rows = []
    try:
        for level in levels:
            while len(publishers) < level:
                publisher = Publisher(f"bl-{len(publishers)}")
                workers.append(await asyncio.create_subprocess_exec(
                    sys.executable, str(Path(__file__)), "--baseline-job", url, publisher.name, cwd=ROOT))
                await publisher.start(url)
                publishers.append(publisher)
                await asyncio.wait_for(publisher.first_result, 60)
            rows.append(await measure([w.pid for w in workers], publishers, seconds))
    finally:
        for publisher in publishers:
            await publisher.stop()
        for worker in workers:
            worker.terminate()
        await asyncio.gather(*(w.wait() for w in workers))
    return {"levels": rows}


def marginal(rows: list[dict[str, float]]) -> dict[str, float]:
    low, high = rows[0], rows[-1]
    extra = high["jobs"] - low["jobs"]
    if extra <= 0:
        return {"cpu_pct_per_job": high["cpu_pct"] / high["jobs"], "pss_mb_per_job": high["pss_mb"] / high["jobs"]}
    return {"cpu_pct_per_job": (high["cpu_pct"] - low["cpu_pct"]) / extra,
            "pss_mb_per_job": (high["pss_mb"] - low["pss_mb"]) / extra}


async def bench(levels: list[int], seconds: float) -> dict[str, Any]:
    from framepool.devserver.server import DevServer

    devserver = DevServer(port=0, keys={KEY: SECRET}, departure_timeout=0.5)
    await devserver.start()
    try:
        framepool = await run_framepool(devserver.url, levels, seconds)
        baseline = await run_baseline(devserver.url, levels, seconds)
    finally:
        await devserver.aclose()
    fp, bl = marginal(framepool["levels"]), marginal(baseline["levels"])
    return {
        "env": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "levels": levels, "seconds": seconds},
        "framepool": {**framepool, "marginal": fp}, "baseline": {**baseline, "marginal": bl},
        "ratios": {"baseline_over_framepool_pss_per_job": bl["pss_mb_per_job"] / max(fp["pss_mb_per_job"], 1e-3),
                   "baseline_over_framepool_cpu_per_job": bl["cpu_pct_per_job"] / max(fp["cpu_pct_per_job"], 1e-3)},
        "targets": {"pss_mb_per_job <= 2": fp["pss_mb_per_job"] <= 2.0, "cpu_pct_per_job <= 1.2": fp["cpu_pct_per_job"] <= 1.2},
    }


def print_table(result: dict[str, Any]) -> None:
    for system in ("framepool", "baseline"):
        print(f"{system}:")
        print("  jobs  cpu % of a core   PSS MiB   results delivered   processes")
        for row in result[system]["levels"]:
            print(f"  {row['jobs']:4d}  {row['cpu_pct']:15.1f}  {row['pss_mb']:8.1f}  {row['delivered']:18.0%}  {row['processes']:10d}")
        m = result[system]["marginal"]
        print(f"  marginal per extra job: {m['cpu_pct_per_job']:.2f} % CPU, {m['pss_mb_per_job']:.2f} MiB PSS")
    lat = result["framepool"]["start_latency_ms"]
    print(f"framepool job start latency: median {lat['median']:.0f} ms, max {lat['max']:.0f} ms ({lat['samples']} jobs)")
    print("ratios:", {k: round(v, 1) for k, v in result["ratios"].items()})
    print("targets met:", result["targets"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="1,4,8", help="Levels of concurrent jobs, comma-separated.")
    parser.add_argument("--seconds", type=float, default=5.0, help="Measurement window per level.")
    parser.add_argument("--quick", action="store_true", help="Levels 1,3 and 2 s windows (smoke run).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--baseline-job", nargs=2, metavar=("URL", "ROOM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="The HMAC key is")
    if args.baseline_job:
        asyncio.run(baseline_job(*args.baseline_job))
        return 0
    levels = [1, 3] if args.quick else [int(x) for x in args.jobs.split(",")]
    seconds = 2.0 if args.quick else args.seconds
    result = asyncio.run(bench(levels, seconds))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
