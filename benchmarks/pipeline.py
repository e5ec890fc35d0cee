"""Pipeline benchmark: N realtime 10 ms audio streams through the supervisor and the worker pool.

Each step attaches N streams (48 kHz mono, 10 ms frames, a no-op processor by default) to a real
`WorkerPool`, then the supervisor's event loop pushes one frame per stream every 10 ms, paced by the
monotonic clock (all streams per tick, like the SDK delivering frames), for a fixed duration. Afterwards
every stream is drained and the frames the processors never saw (ring drops, losses) are counted.

Reported per N: the drop fraction, the tick rate achieved (a supervisor that cannot keep up pushes fewer
frames than asked, which is a failure too), CPU of the supervisor and of the workers per second of wall
time and per frame. The largest N with < 0.1 % drops and >= 99 % of the ticks is the capacity.

Baselines measured in the same run, so the figures are ratios:
- `ring_us`: one in-process FrameRing write + peek + release of the same frame (the bare data path).
- `single`: one stream through the whole pipeline (per-frame CPU with no batching to amortise).

    .venv/bin/python benchmarks/pipeline.py                 # ramp, table
    .venv/bin/python benchmarks/pipeline.py --json          # one JSON object
    .venv/bin/python benchmarks/pipeline.py --quick         # short steps, smaller ramp
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np
import psutil

sys.path.insert(
    0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)  # `tests.support.procs` in workers too

from framepool.ipc.ring import POLICY_DROP_NEWEST, FrameRing
from framepool.ipc.slots import FMT_S16, KIND_AUDIO, AudioShape, OutputFrame
from framepool.pool import Result, StreamSpec, WorkerPool
from framepool.processors.registry import parse_spec
from framepool.settings import Settings

TICK = 0.010
FRAME = (np.sin(np.arange(480) / 7.0) * 8000).astype(np.int16)  # deterministic 10 ms of 48 kHz mono
SHAPE = AudioShape(48000, 1, 480)
RAMP = [100, 250, 500, 1000, 2000, 3000, 4000, 6000]
QUICK_RAMP = [100, 500, 1000]


class CountingSink:
    def __init__(self) -> None:
        self.results = 0

    def on_result(self, result: Result) -> None:
        self.results += 1

    def on_output_frame(self, stream_id: str, frame: OutputFrame) -> None:
        pass

    def on_stream_event(self, stream_id: str, event: str, detail: str) -> None:
        pass


def ring_baseline(frames: int = 200_000) -> float:
    """µs of one write + peek + release in one process: the data path with no process boundary."""
    ring = FrameRing.create(16, FRAME.nbytes, POLICY_DROP_NEWEST)
    try:
        for seq in range(2000):  # warm-up
            ring.write(FRAME, seq, 0, KIND_AUDIO, FMT_S16, 0, 48000, 1, 480)
            ring.peek()
            ring.release()
        start = time.process_time()
        for seq in range(frames):
            ring.write(FRAME, seq, 0, KIND_AUDIO, FMT_S16, 0, 48000, 1, 480)
            ring.peek()
            ring.release()
        return (time.process_time() - start) / frames * 1e6
    finally:
        ring.close()


def runqueue_wait(pids: list[int]) -> float:
    """Seconds the workers spent runnable but waiting for a CPU (/proc/PID/schedstat): contention, not
    work."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                total += int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            pass
    return total


def worker_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


async def run_step(pool: WorkerPool, streams: int, seconds: float, processor: str) -> dict[str, Any]:
    sink = CountingSink()
    spec = [parse_spec(processor)]
    attachments = [
        await pool.attach(
            StreamSpec(
                stream_id=f"s{i}", kind="audio", processors=spec, realtime=True, max_frame_bytes=FRAME.nbytes
            ),
            sink,
        )
        for i in range(streams)
    ]
    loop = asyncio.get_running_loop()
    for warm in range(20):  # warm-up ticks, not measured
        for a in attachments:
            a.push(FRAME, warm, SHAPE)
        await asyncio.sleep(TICK)
    for a in attachments:
        await a.drain()
    before = [a.stats() for a in attachments]
    pids = pool.worker_pids()
    ticks_wanted = int(seconds / TICK)
    sup0, work0, wall0, wait0 = time.process_time(), worker_cpu(pids), time.monotonic(), runqueue_wait(pids)
    start = loop.time()
    ticks = 0
    late_max = 0.0
    for tick in range(ticks_wanted):
        deadline = start + tick * TICK
        late_max = max(late_max, loop.time() - deadline)
        if deadline > loop.time():
            await asyncio.sleep(deadline - loop.time())
        elif tick % 50 == 0:
            await asyncio.sleep(0)  # behind schedule: still let the loop drain results now and then
        ts = int(deadline * 1e6)
        for a in attachments:
            a.push(FRAME, ts, SHAPE)
        ticks += 1
        if loop.time() > start + seconds * 1.5:
            break  # hopelessly behind: stop, the tick ratio reports it
    for a in attachments:
        await a.drain()
    wall = time.monotonic() - wall0
    sup, work = time.process_time() - sup0, worker_cpu(pids) - work0
    waited = runqueue_wait(pids) - wait0
    after = [a.stats() for a in attachments]
    for a in attachments:
        await a.detach()
    pushed = sum(x.pushed - y.pushed for x, y in zip(after, before, strict=True))
    processed = sum(x.processed - y.processed for x, y in zip(after, before, strict=True))
    # Ticks the clock allowed in the measured wall time vs ticks delivered.
    tick_ratio = ticks / ticks_wanted
    return {
        "streams": streams,
        "frames_pushed": pushed,
        "frames_processed": processed,
        "drop_fraction": (pushed - processed) / pushed if pushed else 0.0,
        "tick_ratio": tick_ratio,
        "max_tick_late_ms": late_max * 1e3,
        "wall_s": wall,
        "supervisor_cpu": sup / wall,
        "workers_cpu": work / wall,
        "workers_runqueue_wait": waited / wall,  # > 0: other processes took the workers' CPU
        "supervisor_us_per_frame": sup / pushed * 1e6 if pushed else 0.0,
        "workers_us_per_frame": work / pushed * 1e6 if pushed else 0.0,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    # The pool sizes audio rings in milliseconds of the processors' frames (10 ms here): N slots = N x 10 ms.
    settings = Settings(
        audio_ring_ms=args.ring_slots * round(TICK * 1000),
        log_level="warning",
        ping_interval=1.0,
        ping_timeout=30.0,
    )
    pool = WorkerPool(settings)
    await pool.start()
    steps: list[dict[str, Any]] = []
    try:
        single = await run_step(pool, 1, args.seconds, args.processor)
        ramp = QUICK_RAMP if args.quick else RAMP
        failures = 0
        for n in ramp:
            step = await run_step(pool, n, args.seconds, args.processor)
            step["ok"] = step["drop_fraction"] < 0.001 and step["tick_ratio"] >= 0.99
            steps.append(step)
            if not args.json:
                print_step(step)
            failures += not step["ok"]
            if failures >= 2:
                break
        workers = len(pool.worker_pids())
    finally:
        await pool.aclose()
    capacity = max((s["streams"] for s in steps if s["ok"]), default=0)
    ring_us = ring_baseline()
    return {
        "env": {
            "python": platform.python_version(),
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "numpy": np.__version__,
            "workers": workers,
            "processor": args.processor,
            "seconds_per_step": args.seconds,
            "ring_slots": args.ring_slots,
        },
        "baseline": {"ring_us": ring_us, "single": single},
        "results": steps,
        "capacity_streams": capacity,
        "ratios": {
            s["streams"]: {
                "pipeline_us_per_frame_over_ring_us": (
                    s["supervisor_us_per_frame"] + s["workers_us_per_frame"]
                )
                / ring_us,
                "per_frame_cpu_over_single_stream": (s["supervisor_us_per_frame"] + s["workers_us_per_frame"])
                / (single["supervisor_us_per_frame"] + single["workers_us_per_frame"]),
            }
            for s in steps
        },
        "target_met": capacity >= 1000,
    }


def print_step(step: dict[str, Any]) -> None:
    print(
        f"{step['streams']:>6} streams  drops {step['drop_fraction'] * 100:7.3f} %  "
        f"ticks {step['tick_ratio'] * 100:6.1f} %  "
        f"supervisor {step['supervisor_cpu'] * 100:5.1f} % ({step['supervisor_us_per_frame']:.2f} µs/frame)  "
        f"workers {step['workers_cpu'] * 100:5.1f} % ({step['workers_us_per_frame']:.2f} µs/frame)  "
        f"late≤{step['max_tick_late_ms']:.0f} ms  starved {step['workers_runqueue_wait'] * 100:.0f} %  "
        f"{'ok' if step['ok'] else 'FAIL'}",
        flush=True,
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="short steps and a smaller ramp")
    parser.add_argument(
        "--seconds", type=float, default=None, help="measured seconds per step (default 5, quick 2)"
    )
    parser.add_argument(
        "--processor", default="tests.support.procs:Noop", help="processor spec for every stream"
    )
    parser.add_argument("--ring-slots", type=int, default=16, help="frames per stream ring (16 = 160 ms)")
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 5.0
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    report = runner(bench(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"baseline: ring write+read {report['baseline']['ring_us']:.2f} µs/frame in one process; "
            f"single stream {report['baseline']['single']['supervisor_us_per_frame']:.1f} + "
            f"{report['baseline']['single']['workers_us_per_frame']:.1f} µs/frame"
        )
        print(
            f"capacity: {report['capacity_streams']} streams with < 0.1 % drops "
            f"(target 1000: {'met' if report['target_met'] else 'not met'})"
        )


if __name__ == "__main__":
    main()
