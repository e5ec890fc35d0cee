"""A healthy stream beside a flooding one, with the supervisor's loop lag measured meanwhile (test process,
which is the supervisor here; used by tests/process/test_loop_budget.py and benchmarks/isolation.py).

The loop lag is what every room on the supervisor feels: a probe coroutine sleeps 1 ms again and again on
the loop under test and records how late each wake-up is. A callback that holds the loop for 30 ms shows
as a 30 ms sample, whatever ran it.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

import numpy as np

from framepool.ipc.slots import AudioShape, OutputFrame
from framepool.pool import Result, StreamSpec, WorkerPool
from framepool.processors.registry import parse_spec

SHAPE = AudioShape(48000, 1, 480)  # 10 ms of 48 kHz mono
FRAME_S = 0.01
PROBE_S = 0.001
HEALTHY = "tests.support.procs:Count"
FLOODS = {
    "none": HEALTHY,  # the baseline: the same two streams, the second one as well-behaved as the first
    "results": "tests.support.procs:FloodResults(per_frame=2000)",
    "outputs": "tests.support.procs:FloodOutput(per_frame=2000)",
    # ... and writing the supervisor's result doorbell after each one, to wake the drain every loop turn
    "results+bell": "tests.support.procs:FloodResults(per_frame=2000, ring_bell=true)",
    "outputs+bell": "tests.support.procs:FloodOutput(per_frame=2000, ring_bell=true)",
    "control": "tests.support.procs:FloodControl",  # 20,000 messages: over the rate, the worker is killed
}


class CountingSink:
    """Counts what the pool delivers; keeps nothing (a flood delivers hundreds of thousands)."""

    def __init__(self, work_s: float = 0.0) -> None:
        self.work_s = work_s  # busy time per delivery: what a real sink pays (encode, queue, SDK call)
        self.results = 0
        self.frames = 0
        self.events: list[tuple[str, str]] = []

    def on_result(self, result: Result) -> None:
        self.results += 1
        self._work()

    def on_output_frame(self, stream_id: str, frame: OutputFrame) -> None:
        self.frames += 1
        self._work()

    def _work(self) -> None:
        if self.work_s:
            end = time.perf_counter() + self.work_s
            while time.perf_counter() < end:
                pass

    def on_stream_event(self, stream_id: str, event: str, detail: str) -> None:
        if event != "processor_error":  # the control flood's forged events: 20,000 of them
            self.events.append((event, detail))


class LagProbe:
    """Sleeps PROBE_S on the running loop until stopped; `lags` are the overshoots in seconds."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(PROBE_S)
            self.lags.append(time.monotonic() - start - PROBE_S)

    async def stop(self) -> dict[str, float]:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        lags = np.array(self.lags or [0.0]) * 1000
        return {
            "samples": len(self.lags),
            "p50_ms": round(float(np.percentile(lags, 50)), 3),
            "p99_ms": round(float(np.percentile(lags, 99)), 3),
            "max_ms": round(float(lags.max()), 3),
        }


def spec(stream_id: str, processors: str, output: bool = False) -> StreamSpec:
    return StreamSpec(
        stream_id=stream_id,
        kind="audio",
        processors=[parse_spec(p) for p in processors.split(";")],
        realtime=True,
        max_frame_bytes=SHAPE.nbytes,
        output_max_frame_bytes=SHAPE.nbytes if output else 0,
    )


async def pace(streams: list[Any], seconds: float) -> int:
    """Push one frame per stream every 10 ms of the monotonic clock for `seconds`; ticks pushed."""
    data = np.zeros(480, dtype=np.int16)
    start = time.monotonic()
    ticks = int(seconds / FRAME_S)
    for tick in range(1, ticks + 1):
        data[0] = tick % 30000
        for stream in streams:
            stream.push(data, tick, SHAPE)
        await asyncio.sleep(max(0.0, start + tick * FRAME_S - time.monotonic()))
    return ticks


def cpu_seconds() -> float:
    """CPU time of this process (every thread), user and system: the supervisor's cost."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def flood_beside_healthy(
    pool: WorkerPool, flood: str, seconds: float, sink_work_s: float = 0.0
) -> dict[str, Any]:
    """A healthy stream (Count) and a flooding one (`FLOODS[flood]`) on different workers of a started
    2-worker pool, paced at 10 ms for `seconds`, the loop lag probed meanwhile; figures for the healthy
    stream."""
    healthy_sink, flood_sink = CountingSink(sink_work_s), CountingSink(sink_work_s)
    healthy = await pool.attach(spec("healthy", HEALTHY), healthy_sink)
    flooder = await pool.attach(spec("flood", FLOODS[flood], output=True), flood_sink)
    assert healthy.worker is not None and flooder.worker is not None
    assert healthy.worker.slot != flooder.worker.slot, "the flooder must not share the healthy one's worker"
    restarts = pool.stats().restarts
    probe = LagProbe()
    wall, cpu = time.monotonic(), cpu_seconds()
    pushed = await pace([healthy, flooder], seconds)
    cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
    lag = await probe.stop()
    await healthy.drain()  # its last results are in: the count is final
    stats = healthy.stats()
    flood_stats = await flooder.detach()
    await healthy.detach()
    return {
        "loop_lag": lag,
        "supervisor_cpu": round(cpu / wall, 3),  # of one core
        "healthy_pushed": pushed,
        "healthy_results": stats.results,  # one per frame it processed (drained, not yet detached)
        "healthy_results_ratio": round(stats.results / pushed, 4),
        "healthy_lost": stats.dropped + stats.lost,
        "flood_results": flood_sink.results,
        "flood_frames": flood_sink.frames,
        "flood_results_dropped": flood_stats.results_dropped,
        "flood_restarts": pool.stats().restarts - restarts,
    }
