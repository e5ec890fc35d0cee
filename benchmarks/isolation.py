"""Isolation benchmark: what a bad processor costs a healthy neighbour stream on the same worker.

One worker hosts two realtime 10 ms audio streams, paced by the monotonic clock on the supervisor's loop:
a healthy neighbour (a counting processor) and a "bad" stream whose first processor misbehaves on every
frame, beside a counting processor on the same stream:
- `slow`:  takes 5 s per frame (a model stuck on a lock): cut off at its hard limit;
- `crash`: os._exit on every frame (a native library calling exit);
- `leak`:  keeps 40 MiB per frame (the worker crosses worker_memory_limit_mb);
- `none`:  the baseline, the same two streams with the counter alone, measured in the same run.
Each scenario runs until the bad processor is quarantined (or, for `none`, for the same fixed time), then
two more seconds, and reports per incident the neighbour's frames lost (dropped by its full ring or lost
with a worker) above the baseline, and the time from the first bad frame to the quarantine.

Targets (checked, `ok` in the JSON): the bad processor is quarantined after exactly `quarantine_incidents`
incidents, and the neighbour loses per incident no more than one budget window of frames: the hard limit
(processor_budget_hard x budget, the longest a call may hold the worker) plus one heartbeat
(ping_interval, how late the pool can notice), in 10 ms frames.

`orphans`: a supervisor process with one worker busy in a processor that never returns is killed with
SIGKILL; the time until every descendant (worker, forkserver, resource tracker) is gone, for each start
method, against the same with the worker idle. Target: gone within 2 s.

`flood`: a healthy stream on one worker of two and a processor flooding on the other, 5 s at 10 ms frames,
the supervisor's loop lag probed meanwhile (a coroutine sleeping 1 ms, recording how late it wakes): results
(2,000 per frame), output frames (2,000 per frame), either while also ringing the supervisor's result
doorbell after every write, and control messages (20,000 at once: over the control rate, so the worker is
killed and replaced). Every delivery costs the sink `--sink-work-us` of busy time, as encoding and queueing
a result for a room does. Reported per case: loop lag p50/p99/max, the supervisor's CPU (of one core), the
healthy stream's results per frame pushed, against `none` (the same two streams, both healthy) in the same
run. Targets: loop lag p99 < 20 ms and the healthy stream's results >= 99 %.

    .venv/bin/python benchmarks/isolation.py               # table
    .venv/bin/python benchmarks/isolation.py --json        # one JSON object
    .venv/bin/python benchmarks/isolation.py --flood-only  # the flood cases alone (~45 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import msgspec
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.support.procs

from framepool.ipc.slots import AudioShape
from framepool.pool import StreamSpec, WorkerPool
from framepool.processors.registry import parse_spec
from framepool.settings import Settings
from tests.support.flood import FLOODS, flood_beside_healthy

SHAPE = AudioShape(48000, 1, 480)
FRAME_S = 0.01
COUNT = "tests.support.procs:Count"
BAD = {
    "none": "",
    "slow": "tests.support.procs:Stall(seconds=5.0)",
    "crash": "tests.support.procs:ExitCrash",
    "leak": "tests.support.procs:Leak(mb_per_frame=40)",
}
SETTINGS: dict[str, Any] = {
    "workers": 1,
    "ping_interval": 0.2,
    "ping_timeout": 5.0,
    "restart_backoff": 0.2,
    "quarantine_incidents": 2,
    "processor_budget_ms": 100.0,
    "processor_budget_hard": 2.0,
    "worker_memory_limit_mb": 400,
    "log_level": "error",
}
BASELINE_S = 3.0
AFTER_S = 2.0


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.quarantined = asyncio.Event()
        self.quarantined_at = 0.0

    def on_result(self, result: Any) -> None:
        pass

    def on_output_frame(self, stream_id: str, frame: Any) -> None:
        pass

    def on_stream_event(self, stream_id: str, event: str, detail: str) -> None:
        self.events.append((event, detail))
        if event == "processor_quarantined":
            self.quarantined_at = time.monotonic()
            self.quarantined.set()


def spec(stream_id: str, processors: str) -> StreamSpec:
    return StreamSpec(
        stream_id=stream_id,
        kind="audio",
        processors=[parse_spec(p) for p in processors.split(";") if p],
        realtime=True,
        max_frame_bytes=SHAPE.nbytes,
    )


async def pace(streams: list[Any], until: asyncio.Event, seconds: float) -> int:
    """Push one frame per stream every 10 ms until `until` is set, then `seconds` more; frames pushed."""
    data = np.zeros(480, dtype=np.int16)
    start = time.monotonic()
    tick = 0
    stop_at: float | None = None
    while stop_at is None or time.monotonic() < stop_at:
        if stop_at is None and until.is_set():
            stop_at = time.monotonic() + seconds
        tick += 1
        for stream in streams:
            stream.push(data, tick, SHAPE)
        await asyncio.sleep(max(0.0, start + tick * FRAME_S - time.monotonic()))
    return tick


async def scenario(name: str) -> dict[str, Any]:
    pool = WorkerPool(msgspec.convert(SETTINGS, Settings))
    await pool.start()
    try:
        good_sink, bad_sink = Sink(), Sink()
        good = await pool.attach(spec("good", COUNT), good_sink)
        bad = await pool.attach(spec("bad", f"{BAD[name]};{COUNT}"), bad_sink)
        started = time.monotonic()
        until = bad_sink.quarantined
        if name == "none":
            asyncio.get_running_loop().call_later(BASELINE_S, until.set)
        pushed = await pace([good, bad], until, AFTER_S)
        await good.drain()
        stats = good.stats()
        quarantine_s = round(bad_sink.quarantined_at - started, 3) if name != "none" else None
        return {
            "pushed": pushed,
            "neighbour_processed": stats.processed,
            "neighbour_lost": stats.dropped + stats.lost,
            "incidents": bad.stats().incidents,
            "quarantined": list(bad.stats().quarantined),
            "restarts": pool.stats().restarts,
            "wall_s": round(time.monotonic() - started, 3),
            "quarantine_s": quarantine_s,
        }
    finally:
        await pool.aclose()


ORPHANS_TARGET_S = 2.0


def orphans(start_method: str, busy: bool) -> dict[str, Any]:
    """Kill -9 a supervisor (tests/support/busy_supervisor_script.py); seconds until its descendants die."""
    import subprocess

    import psutil

    from tests.support.pool import wait_exited

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = [sys.executable, "-m", "tests.support.busy_supervisor_script", start_method]
    child = subprocess.Popen(
        [*args] if busy else [*args, "idle"], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        supervisor = json.loads(child.stdout.readline())["supervisor"]
        family = [p.pid for p in psutil.Process(supervisor).children(recursive=True)]
        started = time.monotonic()
        child.kill()
        alive = wait_exited(family, 10.0)
        gone_s = time.monotonic() - started
    finally:
        child.kill()
        child.wait()
    return {"descendants": len(family), "gone_s": round(gone_s, 3), "left_alive": alive}


FLOOD_S = 5.0
LAG_P99_TARGET_MS = 20.0
HEALTHY_RESULTS_TARGET = 0.99


async def floods(sink_work_s: float) -> dict[str, Any]:
    """Each flood case in a fresh 2-worker pool; `none` first, the baseline the ratios are taken against."""
    cases: dict[str, Any] = {}
    for name in FLOODS:
        pool = WorkerPool(msgspec.convert({**SETTINGS, "workers": 2, "ping_timeout": 2.0}, Settings))
        await pool.start()
        try:
            cases[name] = await flood_beside_healthy(pool, name, FLOOD_S, sink_work_s)
        finally:
            await pool.aclose()
    base = cases["none"]
    for case in cases.values():
        lag = case["loop_lag"]
        case["p99_vs_baseline"] = round(lag["p99_ms"] / max(base["loop_lag"]["p99_ms"], 1e-3), 2)
        case["cpu_vs_baseline"] = round(case["supervisor_cpu"] / max(base["supervisor_cpu"], 1e-3), 2)
        case["ok"] = (
            lag["p99_ms"] < LAG_P99_TARGET_MS and case["healthy_results_ratio"] >= HEALTHY_RESULTS_TARGET
        )
    return cases


async def bench(flood_only: bool, sink_work_s: float) -> dict[str, Any]:
    flood = await floods(sink_work_s)
    report: dict[str, Any] = {
        "flood": flood,
        "flood_sink_work_us": sink_work_s * 1e6,
        "ok": all(case["ok"] for case in flood.values()),
    }
    if flood_only:
        return report
    rest = await quarantine_and_orphans()
    return {**rest, **report, "ok": report["ok"] and rest["ok"]}


async def quarantine_and_orphans() -> dict[str, Any]:
    window_s = SETTINGS["processor_budget_ms"] / 1000 * SETTINGS["processor_budget_hard"]
    window_frames = int((window_s + SETTINGS["ping_interval"]) / FRAME_S)
    results = {name: await scenario(name) for name in BAD}
    baseline = results["none"]["neighbour_lost"]
    ok = True
    for name, result in results.items():
        if name == "none":
            continue
        incidents = max(1, result["incidents"])
        result["neighbour_lost_per_incident"] = round((result["neighbour_lost"] - baseline) / incidents, 1)
        result["ok"] = (
            result["incidents"] == SETTINGS["quarantine_incidents"]
            and len(result["quarantined"]) == 1
            and result["neighbour_lost_per_incident"] <= window_frames
        )
        ok = ok and result["ok"]
    exits = {
        f"{method} {'busy' if busy else 'idle'}": orphans(method, busy)
        for method in ("forkserver", "spawn")
        for busy in (False, True)
    }
    for result in exits.values():
        result["ok"] = not result["left_alive"] and result["gone_s"] <= ORPHANS_TARGET_S
        ok = ok and result["ok"]
    return {
        "settings": SETTINGS,
        "budget_window_frames": window_frames,
        "scenarios": results,
        "orphans": exits,
        "ok": ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--flood-only", action="store_true", help="only the flood cases")
    parser.add_argument("--sink-work-us", type=float, default=10.0, help="busy time per delivery (flood)")
    args = parser.parse_args()
    report = asyncio.run(bench(args.flood_only, args.sink_work_us / 1e6))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    sys.exit(0 if report["ok"] else 1)


def print_table(report: dict[str, Any]) -> None:
    for name, case in report["flood"].items():
        lag = case["loop_lag"]
        print(
            f"flood {name:13} loop lag p50 {lag['p50_ms']:6.2f} p99 {lag['p99_ms']:6.2f}"
            f" max {lag['max_ms']:6.2f} ms (p99 x{case['p99_vs_baseline']})"
            f"  supervisor cpu {case['supervisor_cpu']:.2f} (x{case['cpu_vs_baseline']})"
            f"  healthy results {case['healthy_results_ratio']:.2%}  ok {case['ok']}"
        )
    if "scenarios" not in report:
        return
    print(f"budget window: {report['budget_window_frames']} frames of 10 ms")
    for name, result in report["scenarios"].items():
        print(
            f"{name:6} neighbour lost {result['neighbour_lost']:4} of {result['pushed']:4}"
            f"  incidents {result['incidents']}  quarantine after {result['quarantine_s']} s"
            f"  per incident {result.get('neighbour_lost_per_incident', '-')}  ok {result.get('ok', '-')}"
        )
    for name, result in report["orphans"].items():
        print(
            f"supervisor killed ({name}): {result['descendants']} descendants gone in {result['gone_s']} s"
            f"  ok {result['ok']}"
        )


if __name__ == "__main__":
    main()
