"""Agent server density: framepool's agent server against process-per-job and the SDK's floor, in one run
(harness process).

    .venv/bin/python benchmarks/jobs.py            # table, < 14 min
    .venv/bin/python benchmarks/jobs.py --json     # one JSON object: env, config, systems, ratios, targets
    .venv/bin/python benchmarks/jobs.py --quick    # smoke run, < 3 min, noisier

The job is the issue's audio job: a publisher sends a 48 kHz mono tone in 10 ms frames into its own room, the
job subscribes to it, computes audio-level (RMS/peak per 100 ms window) and publishes each window as a data
message (10 per second) that the room's publisher counts. framepool asks the SDK for frames as long as the
processor's window (100 ms), the baseline for 10 ms frames as a LiveKit Agents job would. The third system,
`sdk-floor`, is the SDK alone: one process with one room connection (in framepool's connection mode) and one
AudioStream per job at framepool's frame size, frames dropped (`_jobs_floor.py`); framepool's marginal cost
minus the floor's is framepool's own overhead per job. Per system, in turn, on a fresh dev server
(`python -m framepool.devserver`) and a fresh load generator (`_jobs_load.py`):

1. jobs are added one at a time up to each K of the schedule; each start's latency is measured
   (`_jobs_systems` says exactly what it spans for each system);
2. at each K, after a settle time, measurement windows: CPU of the measured processes (user + system
   seconds over the window, as % of one core), their summed PSS (and USS) at the end, the result rate of
   every job (results per second from the publisher's counts, timed by the arrival of the last result, so
   window edges do not quantise it), and the system's own drop counters. At the scheduled K (the range
   the slopes are fitted over) three consecutive windows, whose median CPU is the point (all three are in
   the JSON, `cpu_pct_windows`): the dev server and the load generator share the 2 cores, and one window
   they disturb would otherwise move the slope; in the ramp beyond it, one window per K;
3. after the schedule, K keeps growing in steps until drops (mean result rate per job below 99 % of 10/s, or
   framepool's ring/result drops) in two consecutive windows (at a scheduled K: in two of its three), a job
   fails to start, K reaches --max-k, or the system's time budget is spent.

Marginal memory and CPU per extra job are the least-squares slopes over the drop-free windows in which the
machine was below 90 % busy (at saturation the SDK batches events and threads starve, which flattens the CPU
curve; the slopes over every drop-free window are reported too); the ratios are framepool / baseline and
framepool / sdk-floor, and framepool − sdk-floor is reported per job. The dev server and the load generator
run on the same 2 cores: their CPU is reported per window, because when they saturate the machine the "drops"
say more about them than about the system under test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _jobs_procs import Helper, HelperError, ProcessSet, free_port, python_argv, shm_entries
from _jobs_systems import (
    JOB_TIMEOUT,
    PROCESSOR,
    START_TIMEOUT,
    TOPIC,
    BaselineSystem,
    FloorSystem,
    ForkedBaselineSystem,
    FramepoolSystem,
    System,
    token,
)

from framepool.pool import input_format_of
from framepool.processors.api import AudioFormat
from framepool.processors.registry import parse_spec
from framepool.settings import Settings

RESULTS_PER_SECOND = 10.0  # audio-level, 100 ms windows
RATE_FLOOR = 0.99
SATURATED = 0.9  # a window with the machine this busy (of all its CPUs) is left out of the marginal fits
TARGET_PSS_MB = 2.0
TARGET_CPU_PCT = 1.2
MB = 1 << 20
SYSTEMS = ["framepool", "sdk-floor", "baseline"]  # the default run, in this order, each on its own dev server
# Also on request (--only sdk-floor-data): the floor publishing one result-sized data message per 100 ms
# and room.


@dataclass
class Config:
    schedule: list[int]
    window: float
    settle: float
    ramp_step: int
    ramp_concurrency: int
    max_k: int
    budget: float  # seconds per system, start-up included
    workers: int
    load_threshold: float
    repeats: int = 1  # windows per scheduled K (the fitted range); the point is their median
    baseline_start: str = (
        "forkserver"  # how baseline job processes start: forkserver (LiveKit Agents) or spawn
    )
    # framepool's and the floor's connection mode (framepool's setting; the baseline keeps the SDK default, as
    # LiveKit Agents does)
    single_peer_connection: bool = Settings().single_peer_connection


FULL = Config(
    schedule=[1, 4, 8, 12, 16],
    window=10.0,
    settle=3.0,
    ramp_step=8,
    ramp_concurrency=4,
    max_k=64,
    budget=250.0,
    workers=0,
    load_threshold=0.75,
    repeats=3,
)
QUICK = Config(
    schedule=[1, 3, 6],
    window=5.0,
    settle=2.0,
    ramp_step=4,
    ramp_concurrency=4,
    max_k=14,
    budget=40.0,
    workers=0,
    load_threshold=0.75,
)


@dataclass
class Point:
    k: int
    cpu_pct: float  # of one core, the measured processes
    pss_mb: float
    uss_mb: float
    processes: int
    rate_mean: float  # results per second per job / expected
    rate_min: float
    drops: dict[str, int]  # framepool's own counters, deltas over the window
    worst_job_inside: dict[str, int]  # framepool: what the slowest job's supervisor side saw over the window
    devserver_cpu_pct: float
    loadgen_cpu_pct: float
    machine_busy_pct: float  # every process on the machine, % of one core (the machine has cpus * 100)
    supervisor_cpu_pct: float | None  # framepool: the supervisor alone (the rest of cpu_pct is its workers)
    ok: bool
    cpu_pct_windows: list[float] = field(
        default_factory=list
    )  # every window at this K; cpu_pct is their median


def median_point(points: list[Point]) -> Point:
    """One point from consecutive windows at the same K: median CPU figures (a window that another process on
    the shared machine disturbed does not move it), the last window's memory, the lowest result rates, every
    window's drops; ok when most windows were."""

    def mid(values: list[float]) -> float:
        return float(np.median(values))

    last = points[-1]
    supervisor = [p.supervisor_cpu_pct for p in points if p.supervisor_cpu_pct is not None]
    return replace(
        last,
        cpu_pct=mid([p.cpu_pct for p in points]),
        rate_mean=min(p.rate_mean for p in points),
        rate_min=min(p.rate_min for p in points),
        drops={key: sum(p.drops.get(key, 0) for p in points) for key in last.drops},
        devserver_cpu_pct=mid([p.devserver_cpu_pct for p in points]),
        loadgen_cpu_pct=mid([p.loadgen_cpu_pct for p in points]),
        machine_busy_pct=mid([p.machine_busy_pct for p in points]),
        supervisor_cpu_pct=mid(supervisor) if len(supervisor) == len(points) else None,
        ok=2 * sum(not p.ok for p in points) < len(points),
        cpu_pct_windows=[p.cpu_pct for p in points],
    )


@dataclass
class SystemRun:
    name: str
    points: list[Point] = field(default_factory=list)
    latencies_s: list[float] = field(
        default_factory=list
    )  # job requested -> first result; one start at a time
    job_start_s: list[float] = field(
        default_factory=list
    )  # job reached the system -> first result; same starts
    ramp_latencies_s: list[float] = field(
        default_factory=list
    )  # job requested -> first result; concurrent batches
    max_k_without_drops: int = 0
    limit: str = ""
    marginal_pss_mb: float | None = None
    marginal_uss_mb: float | None = None
    marginal_cpu_pct: float | None = None
    marginal_supervisor_cpu_pct: float | None = None
    fit_ks: list[int] = field(default_factory=list)  # the windows the marginal figures are fitted over
    marginal_pss_mb_all_windows: float | None = (
        None  # the same fits over every drop-free window, saturated or not
    )
    marginal_cpu_pct_all_windows: float | None = None
    base_pss_mb: float | None = None
    base_cpu_pct: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def fit(self, capacity_pct: float) -> None:
        """Slopes over the drop-free windows in which the machine was not saturated (a saturated machine
        batches the SDK's events and starves threads, which flattens the CPU curve); all windows if fewer
        than two such K."""
        good = [p for p in self.points if p.ok]
        if len({p.k for p in good}) < 2:
            return
        ks = np.array([p.k for p in good], dtype=float)
        self.marginal_pss_mb_all_windows = float(np.polyfit(ks, [p.pss_mb for p in good], 1)[0])
        self.marginal_cpu_pct_all_windows = float(np.polyfit(ks, [p.cpu_pct for p in good], 1)[0])
        calm = [p for p in good if p.machine_busy_pct < SATURATED * capacity_pct]
        if len({p.k for p in calm}) >= 2:
            good = calm
        self.fit_ks = [p.k for p in good]
        ks = np.array(self.fit_ks, dtype=float)
        self.marginal_pss_mb, self.base_pss_mb = (
            float(v) for v in np.polyfit(ks, [p.pss_mb for p in good], 1)
        )
        self.marginal_uss_mb = float(np.polyfit(ks, [p.uss_mb for p in good], 1)[0])
        self.marginal_cpu_pct, self.base_cpu_pct = (
            float(v) for v in np.polyfit(ks, [p.cpu_pct for p in good], 1)
        )
        supervisor = [p.supervisor_cpu_pct for p in good if p.supervisor_cpu_pct is not None]
        if len(supervisor) == len(good):
            self.marginal_supervisor_cpu_pct = float(np.polyfit(ks, supervisor, 1)[0])


class Ramp:
    """Grows one system's job count and measures it (see the module docstring)."""

    def __init__(
        self, system: System, loadgen: Helper, devserver: Helper, cfg: Config, deadline: float
    ) -> None:
        self.system = system
        self.loadgen = loadgen
        self.devserver = devserver
        self.cfg = cfg
        self.deadline = deadline
        self.rooms: list[str] = []
        self.run = SystemRun(system.name)

    async def start_one(self, latencies: list[float], job_starts: list[float] | None) -> None:
        room = f"{self.system.name}-{len(self.rooms):03d}"
        self.rooms.append(room)
        await self.loadgen.request(
            {
                "op": "join",
                "url": self.system.url,
                "token": token(f"pub-{room}", room),
                "room": room,
                "topic": TOPIC,
            },
            JOB_TIMEOUT,
        )
        first = self.system.first_output(room, self.loadgen)
        requested = await self.system.start_job(room)
        try:
            result = await asyncio.wait_for(first, JOB_TIMEOUT)
        except TimeoutError:
            raise HelperError(f"job in {room} produced no result within {JOB_TIMEOUT:.0f} s") from None
        latencies.append(result["t"] - requested)
        if job_starts is not None:
            assigned = await self.system.assigned_at(room)
            job_starts.append(result["t"] - (requested if assigned is None else assigned))

    async def grow_to(
        self, k: int, concurrency: int, latencies: list[float], job_starts: list[float] | None
    ) -> None:
        await self.system.prepare(k - len(self.rooms))
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                await self.start_one(latencies, job_starts)

        await asyncio.gather(*(one() for _ in range(k - len(self.rooms))))

    async def measure(self, settle: bool = True) -> Point:
        if settle:
            await asyncio.sleep(self.cfg.settle)  # the new jobs' start-up is not their steady state
        measured, supervisor = self.system.measured(), self.system.supervisor()
        devserver, loadgen = ProcessSet.tree(self.devserver.pid), ProcessSet.tree(self.loadgen.pid)
        counts0, counters0 = await self.system.output_counts(self.loadgen), await self.system.counters()
        cpu0, dev0, load0, t0 = (
            measured.cpu_seconds(),
            devserver.cpu_seconds(),
            loadgen.cpu_seconds(),
            time.monotonic(),
        )
        busy0, sup0 = machine_busy_seconds(), supervisor.cpu_seconds() if supervisor else 0.0
        await asyncio.sleep(self.cfg.window)  # the measurement window itself
        cpu1, dev1, load1, t1 = (
            measured.cpu_seconds(),
            devserver.cpu_seconds(),
            loadgen.cpu_seconds(),
            time.monotonic(),
        )
        busy1, sup1 = machine_busy_seconds(), supervisor.cpu_seconds() if supervisor else 0.0
        counts1, counters1 = await self.system.output_counts(self.loadgen), await self.system.counters()
        memory = measured.sample()
        rates = [rate(counts0.get(room), counts1.get(room)) for room in self.rooms]
        drops: dict[str, int] = {
            key: int(counters1[key] - counters0.get(key, 0))
            for key in ("dropped", "lost", "results_dropped", "restarts")
            if key in counters1
        }
        worst_room = self.rooms[int(np.argmin(rates))]
        inside = per_room_delta(counters0.get("rooms", {}), counters1.get("rooms", {}), worst_room)
        mean = float(np.mean(rates)) / RESULTS_PER_SECOND
        worst = float(np.min(rates)) / RESULTS_PER_SECOND
        span = t1 - t0
        return Point(
            k=len(self.rooms),
            cpu_pct=100 * (cpu1 - cpu0) / span,
            pss_mb=memory.pss_bytes / MB,
            uss_mb=memory.uss_bytes / MB,
            processes=memory.processes,
            rate_mean=mean,
            rate_min=worst,
            drops=drops,
            worst_job_inside=inside,
            devserver_cpu_pct=100 * (dev1 - dev0) / span,
            loadgen_cpu_pct=100 * (load1 - load0) / span,
            machine_busy_pct=100 * (busy1 - busy0) / span,
            supervisor_cpu_pct=100 * (sup1 - sup0) / span if supervisor else None,
            ok=mean >= RATE_FLOOR and not any(drops.values()),
        )

    def step_cost(self, k: int) -> float:
        """A pessimistic guess of one step's duration, to stay inside the budget."""
        return (k - len(self.rooms)) * 1.5 + self.cfg.settle + self.cfg.window * self.windows(k) + 2.0

    def windows(self, k: int) -> int:
        return self.cfg.repeats if k in self.cfg.schedule else 1

    async def step(
        self, k: int, concurrency: int, latencies: list[float], job_starts: list[float] | None
    ) -> bool:
        """Grow to k and measure; False when the ramp must stop (the reason is in run.limit)."""
        if time.monotonic() + self.step_cost(k) > self.deadline:
            self.run.limit = f"time budget (no drops up to K={self.run.max_k_without_drops})"
            return False
        try:
            await self.grow_to(k, concurrency, latencies, job_starts)
        except HelperError as exc:
            self.run.limit = f"a job failed to start at K={len(self.rooms)}: {exc}"
            return False
        point = await self.measure()
        if not point.ok:  # one noisy window on a shared machine is not a limit: look again, once
            point = await self.measure(settle=False)
        windows = [point]
        while point.ok and len(windows) < self.windows(k):
            windows.append(await self.measure(settle=False))
        point = median_point(windows)
        self.run.points.append(point)
        if not point.ok:
            capacity = 100 * (os.cpu_count() or 1)
            saturated = point.machine_busy_pct >= 0.95 * capacity
            bad = (
                "two windows"
                if len(windows) == 1
                else f"{sum(not w.ok for w in windows)} of {len(windows)} windows"
            )
            self.run.limit = (
                f"drops at K={point.k} in {bad}: result rate {point.rate_mean:.1%} (worst job "
                f"{point.rate_min:.1%}"
                f"{', inside it: ' + str(point.worst_job_inside) if point.worst_job_inside else ''}), "
                f"counters {point.drops}, machine busy {point.machine_busy_pct:.0f} % "
                f"of {capacity} %"
                + (
                    " (saturated: load generator, dev server and other users share "
                    "the machine, so this is a lower bound)"
                    if saturated
                    else ""
                )
            )
            return False
        self.run.max_k_without_drops = point.k
        return True

    async def execute(self) -> SystemRun:
        for k in self.cfg.schedule:
            if not await self.step(k, 1, self.run.latencies_s, self.run.job_start_s):
                break
        else:
            k = self.cfg.schedule[-1]
            while k < self.cfg.max_k:
                k = min(self.cfg.max_k, k + self.cfg.ramp_step)
                if not await self.step(k, self.cfg.ramp_concurrency, self.run.ramp_latencies_s, None):
                    break
            else:
                self.run.limit = f"--max-k reached without drops (K={self.run.max_k_without_drops})"
        self.run.fit(100.0 * (os.cpu_count() or 1))
        return self.run


def per_room_delta(before: dict[str, list[int]], after: dict[str, list[int]], room: str) -> dict[str, int]:
    """Frames the supervisor read and results it published for `room` over the window (tells media from
    data)."""
    if room not in after:
        return {}
    first = before.get(room, [0, 0])
    return {"frames_read": after[room][0] - first[0], "results_published": after[room][1] - first[1]}


def machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(
        sum(times)
        - times.idle
        - getattr(times, "iowait", 0.0)
        - getattr(times, "guest", 0.0)
        - getattr(times, "guest_nice", 0.0)
    )


def rate(before: list[float] | None, after: list[float] | None) -> float:
    """Results per second between two readings of [count, arrival time of the last result]."""
    if not before or not after or after[1] <= before[1]:
        return 0.0
    return (after[0] - before[0]) / (after[1] - before[1])


@dataclass
class Testbed:
    """A dev server and a load generator of one system's own, and the system under test once it is made."""

    url: str
    devserver: Helper
    loadgen: Helper
    system: System | None = None


@contextlib.asynccontextmanager
async def testbed(name: str, log_dir: Path) -> AsyncIterator[Testbed]:
    """Start a dev server and a load generator; on exit stop the system, then them: every process is gone."""
    port = free_port()
    bed = Testbed(
        url=f"ws://127.0.0.1:{port}",
        devserver=Helper(
            f"devserver-{name}",
            [sys.executable, "-m", "framepool.devserver", "--port", str(port), "--departure-timeout", "1"],
            log_dir,
        ),
        loadgen=Helper(f"loadgen-{name}", python_argv("_jobs_load.py"), log_dir),
    )
    try:
        await bed.devserver.start()
        await bed.devserver.event("line", START_TIMEOUT, contains="url:")
        await bed.loadgen.start()
        yield bed
    finally:
        if bed.system is not None:
            await bed.system.stop()
        bed.loadgen.send_close()
        await bed.loadgen.stop(grace=10.0)
        await bed.devserver.stop(grace=5.0)


async def run_system(make: Callable[[str], System], name: str, cfg: Config, log_dir: Path) -> SystemRun:
    """One system on its own dev server and load generator; every process it started is gone on return."""
    deadline = time.monotonic() + cfg.budget
    async with testbed(name, log_dir) as bed:
        bed.system = system = make(bed.url)
        await system.start()
        run = await Ramp(system, bed.loadgen, bed.devserver, cfg, deadline).execute()
        if isinstance(system, FramepoolSystem):
            run.detail["workers"] = len(system.workers)
        return run


def environment() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "livekit": version("livekit"),
        "loadavg_at_start": os.getloadavg(),
        "machine": "shared (other test runs may be active)",
    }


def ratios(framepool: SystemRun, baseline: SystemRun) -> dict[str, float | None]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b <= 0 else a / b

    def median(values: list[float]) -> float | None:
        return float(np.median(values)) if values else None

    return {
        "marginal_pss": ratio(framepool.marginal_pss_mb, baseline.marginal_pss_mb),
        "marginal_cpu": ratio(framepool.marginal_cpu_pct, baseline.marginal_cpu_pct),
        "start_latency_median": ratio(median(framepool.latencies_s), median(baseline.latencies_s)),
        "job_start_median": ratio(median(framepool.job_start_s), median(baseline.job_start_s)),
        "max_jobs_without_drops": ratio(
            float(framepool.max_k_without_drops), float(baseline.max_k_without_drops)
        ),
    }


def over_floor(framepool: SystemRun, floor: SystemRun) -> dict[str, float | None]:
    """framepool's own part of its marginal cost: framepool − sdk-floor, and the ratio framepool /
    sdk-floor."""

    def minus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b <= 0 else a / b

    return {
        "marginal_pss_mb_minus_floor": minus(framepool.marginal_pss_mb, floor.marginal_pss_mb),
        "marginal_uss_mb_minus_floor": minus(framepool.marginal_uss_mb, floor.marginal_uss_mb),
        "marginal_cpu_pct_minus_floor": minus(framepool.marginal_cpu_pct, floor.marginal_cpu_pct),
        "marginal_supervisor_cpu_pct_minus_floor": minus(
            framepool.marginal_supervisor_cpu_pct, floor.marginal_supervisor_cpu_pct
        ),
        "marginal_pss_ratio": ratio(framepool.marginal_pss_mb, floor.marginal_pss_mb),
        "marginal_cpu_ratio": ratio(framepool.marginal_cpu_pct, floor.marginal_cpu_pct),
    }


def framepool_frame_ms() -> int:
    """The AudioStream frame size framepool's supervisor asks for on the benchmark's processor."""
    fmt = input_format_of([parse_spec(PROCESSOR)])
    assert isinstance(fmt, AudioFormat)
    return fmt.frame_ms


def targets(framepool: SystemRun) -> dict[str, bool | None]:
    pss, cpu = framepool.marginal_pss_mb, framepool.marginal_cpu_pct
    return {
        f"marginal_pss_le_{TARGET_PSS_MB}_mb": None if pss is None else pss <= TARGET_PSS_MB,
        f"marginal_cpu_le_{TARGET_CPU_PCT}_pct": None if cpu is None else cpu <= TARGET_CPU_PCT,
    }


async def bench(cfg: Config, systems: list[str], keep_logs: Path | None = None) -> dict[str, Any]:
    shm_before = shm_entries()
    env = environment()
    runs: dict[str, SystemRun] = {}
    with tempfile.TemporaryDirectory(prefix="framepool-jobs-") as tmp:
        log_dir = keep_logs or Path(tmp)
        makers: dict[str, Callable[[str], System]] = {
            "framepool": lambda url: FramepoolSystem(
                url, log_dir, cfg.workers, cfg.load_threshold, cfg.single_peer_connection
            ),
            "sdk-floor": lambda url: FloorSystem(
                url, log_dir, framepool_frame_ms(), single_peer_connection=cfg.single_peer_connection
            ),
            "sdk-floor-data": lambda url: FloorSystem(
                url, log_dir, framepool_frame_ms(), TOPIC, single_peer_connection=cfg.single_peer_connection
            ),
            "baseline": (lambda url: ForkedBaselineSystem(url, log_dir))
            if cfg.baseline_start == "forkserver"
            else (lambda url: BaselineSystem(url, log_dir)),
        }
        for name in systems:
            try:
                runs[name] = await run_system(makers[name], name, cfg, log_dir)
            except HelperError as exc:
                runs[name] = SystemRun(name, limit=f"failed: {exc}")
    result: dict[str, Any] = {
        "env": env,
        "config": asdict(cfg),
        "systems": {n: asdict(r) for n, r in runs.items()},
    }
    if "framepool" in runs and "baseline" in runs:
        result["ratios"] = ratios(runs["framepool"], runs["baseline"])
    if "framepool" in runs and "sdk-floor" in runs:
        result["framepool_over_floor"] = over_floor(runs["framepool"], runs["sdk-floor"])
    if "framepool" in runs and "sdk-floor-data" in runs:
        result["framepool_over_floor_data"] = over_floor(runs["framepool"], runs["sdk-floor-data"])
    if "framepool" in runs:
        result["targets_met"] = targets(runs["framepool"])
    result["left_in_dev_shm"] = sorted(shm_entries() - shm_before)
    return result


def fmt(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def print_table(result: dict[str, Any]) -> None:
    env = result["env"]
    print(
        f"jobs benchmark, {env['date']}, {env['cpus']} x {env['cpu']}, "
        f"Python {env['python']}, livekit {env['livekit']}, "
        f"load average at start {env['loadavg_at_start'][0]:.2f} ({env['machine']})"
    )
    for name, run in result["systems"].items():
        print(f"\n{name}: {run['limit']}")
        print(
            f"  {'K':>3} {'CPU %':>7} {'PSS MB':>8} {'USS MB':>8} {'procs':>5} {'rate':>7} {'worst':>7} "
            f"{'devsrv %':>8} {'loadgen %':>9} {'machine %':>9}  drops"
        )
        for p in run["points"]:
            print(
                f"  {p['k']:>3} {p['cpu_pct']:>7.1f} {p['pss_mb']:>8.1f} {p['uss_mb']:>8.1f} "
                f"{p['processes']:>5} "
                f"{p['rate_mean']:>7.1%} {p['rate_min']:>7.1%} {p['devserver_cpu_pct']:>8.1f} "
                f"{p['loadgen_cpu_pct']:>9.1f} {p['machine_busy_pct']:>9.1f}  "
                f"{p['drops'] or ''}{'' if p['ok'] else '  <- drops'}"
            )
        lat, job = run["latencies_s"], run["job_start_s"]
        if lat:
            print(
                f"  start latency (one at a time, n={len(lat)}): requested -> first result median "
                f"{np.median(lat) * 1000:.0f} ms (max {max(lat) * 1000:.0f}); "
                "reached the system -> first result "
                f"median {np.median(job) * 1000:.0f} ms (max {max(job) * 1000:.0f})"
            )
        if run["ramp_latencies_s"]:
            print(
                f"  start latency in the ramp ({len(run['ramp_latencies_s'])} starts, "
                f"{result['config']['ramp_concurrency']} "
                f"at a time): median {np.median(run['ramp_latencies_s']) * 1000:.0f} ms"
            )
        print(
            f"  marginal per extra job (K = {', '.join(map(str, run['fit_ks']))}): "
            f"PSS {fmt(run['marginal_pss_mb'])} MB "
            f"(USS {fmt(run['marginal_uss_mb'])} MB), CPU {fmt(run['marginal_cpu_pct'])} % of a core"
            + (
                f" (supervisor {fmt(run['marginal_supervisor_cpu_pct'])} %)"
                if run["marginal_supervisor_cpu_pct"] is not None
                else ""
            )
            + f"; over every drop-free window PSS {fmt(run['marginal_pss_mb_all_windows'])} MB, CPU "
            f"{fmt(run['marginal_cpu_pct_all_windows'])} %; max K without drops {run['max_k_without_drops']}"
        )
    if "ratios" in result:
        print(
            "\nratios framepool / baseline: "
            + ", ".join(f"{k} {fmt(v, '.3f')}" for k, v in result["ratios"].items())
        )
    if "framepool_over_floor" in result:
        print(
            "framepool against the SDK floor: "
            + ", ".join(f"{k} {fmt(v, '.3f')}" for k, v in result["framepool_over_floor"].items())
        )
    if "framepool_over_floor_data" in result:
        print(
            "framepool against the SDK floor with data: "
            + ", ".join(f"{k} {fmt(v, '.3f')}" for k, v in result["framepool_over_floor_data"].items())
        )
    if "targets_met" in result:
        print("targets (framepool): " + ", ".join(f"{k}: {v}" for k, v in result["targets_met"].items()))
    if result["left_in_dev_shm"]:
        print(f"LEFT IN /dev/shm: {result['left_in_dev_shm']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/jobs.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run (< 3 min), fewer and shorter windows, one per K"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--only",
        choices=[*SYSTEMS, "sdk-floor-data"],
        action="append",
        help="run only this system (repeatable; ratios need both of their systems)",
    )
    parser.add_argument("--max-k", type=int, help="stop the ramp at this many jobs")
    parser.add_argument(
        "--workers", type=int, help="framepool worker processes (default: the daemon's default)"
    )
    parser.add_argument(
        "--baseline-start",
        choices=["forkserver", "spawn"],
        default="forkserver",
        help="baseline job processes forked from a forkserver with livekit/numpy preloaded, as LiveKit "
        "Agents does on Linux (default), or each a fresh interpreter",
    )
    parser.add_argument(
        "--single-peer-connection",
        action="store_true",
        help="framepool's jobs and the floor join in the SDK's single-peer-connection mode "
        "(framepool's single_peer_connection setting; default: the classic pair)",
    )
    parser.add_argument(
        "--keep-logs", type=Path, metavar="DIR", help="write the helpers' logs to DIR (default: discarded)"
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.max_k is not None:
        if args.max_k < 1:
            parser.error("--max-k must be at least 1")
        cfg.max_k = args.max_k
        cfg.schedule = [k for k in cfg.schedule if k <= args.max_k] or [args.max_k]
    if args.keep_logs is not None and not args.keep_logs.is_dir():
        parser.error(f"--keep-logs: {args.keep_logs} is not a directory")
    if args.workers is not None:
        cfg.workers = args.workers
    cfg.baseline_start = args.baseline_start
    cfg.single_peer_connection = args.single_peer_connection or cfg.single_peer_connection
    systems = [name for name in [*SYSTEMS, "sdk-floor-data"] if name in args.only] if args.only else SYSTEMS
    try:
        result = asyncio.run(bench(cfg, systems, args.keep_logs))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0 if all(not r["limit"].startswith("failed") for r in result["systems"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
