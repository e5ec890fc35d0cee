"""Data-flow benchmark: telemetry fan-in through the dev server into a framepool job whose data flow routes
every message to a sink, against the SDK alone receiving the same messages (harness process; it is the
supervisor, the publishers and the dev server are other processes).

    .venv/bin/python benchmarks/dataflow.py            # 50 participants x 20 msg/s x 200 B for 60 s per phase
    .venv/bin/python benchmarks/dataflow.py --quick    # 10 x 20/s x 200 B for 10 s per phase (~2 min)
    .venv/bin/python benchmarks/dataflow.py --json     # one JSON object: env, config, phases, ratios, targets

Processes: the loopback dev server (`python -m framepool.devserver`), the publishers (`_dataflow_publish.py`:
N SDK participants in one process, each sending R reliable 200-byte packets per second on `telemetry` to the
receiver only), and this harness, which is the receiver. Running the publishers elsewhere keeps their CPU
out of the receiver's. Phases, each on a fresh room, in turn:

- `sdk`: the baseline, an SDK participant in this process receiving every packet with a callback that only
  counts it.
- `redis`, `postgres`: framepool's AgentServer in this process, one automatic declarative agent whose data
  table routes `telemetry` to the sink (`[[agents.data.route]] to_bridges`); the daemon's spool and bridge
  process deliver it to a real Redis / PostgreSQL started on loopback as the test fixtures start them
  (`_dataflow_sinks`). A sink whose server binary is missing is skipped with a line saying why.
- `sink-down`: the same agent routing to a webhook whose port nothing listens on: the bridge retries, the
  spool holds the events.

In every phase a probe coroutine sleeps 1 ms again and again on this process's loop (`tests.support.flood.
LagProbe`; in the baseline too, so its own cost is in both). Measured from the publishers' go to the last
message taken (`received`): this process's CPU (user + system, psutil) per 1,000 messages, the loop lag
p50/p99/max, the CPU of framepool's other processes (bridge, the idle worker); then, for the sinks, every
event read back from the sink by event id: intake → commit latency p50/p99 and events lost (sent − distinct
ids at the sink). framepool's own cost is its supervisor CPU per 1,000 messages minus the SDK's; the ratio is
that over the SDK's (target <= 1.5). Targets also: loop lag p99 < 20 ms while the sink is down, 0 lost.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.support
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _dataflow_sinks as sinks
from _devserver_sdk import API_KEY, API_SECRET, DevServerProcess, token
from livekit import rtc

from framepool import loop as framepool_loop
from framepool.agent.declarative import build_agents
from framepool.agent.server import AgentServer
from framepool.bridge.registry import SinkSpec
from framepool.settings import AgentSpec, Settings
from tests.support.flood import LagProbe

PUBLISH = Path(__file__).resolve().parent / "_dataflow_publish.py"
DRAIN_TIMEOUT = 30.0  # after the last send: until every message was taken (then it counts as lost)
SINK_TIMEOUT = 60.0  # until the sink holds every event
TARGET_RATIO, TARGET_LAG_MS = 1.5, 20.0


@dataclass(frozen=True)
class Config:
    participants: int
    rate: float
    size: int
    seconds: float

    @property
    def messages(self) -> int:
        return self.participants * int(self.rate * self.seconds)


class Publishers:
    """The publisher process for one phase (see `_dataflow_publish.py`)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, room: str, to: str, cfg: Config) -> Publishers:
        args = ["--url", url, "--room", room, "--to", to, "--key", API_KEY, "--secret", API_SECRET]
        args += ["--participants", str(cfg.participants), "--rate", str(cfg.rate), "--bytes", str(cfg.size)]
        args += ["--seconds", str(cfg.seconds)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(PUBLISH), *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        publishers = cls(proc)
        await asyncio.wait_for(publishers.event("ready"), 120)
        return publishers

    async def event(self, name: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            message: dict[str, Any] = json.loads(line)
            if message.get("event") == name:
                return message
        raise RuntimeError(f"the publishers exited (status {await self.proc.wait()}) before {name!r}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def idle_window(cfg: Config) -> float:
    return min(5.0, cfg.seconds / 2)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def until(done: Callable[[], bool], within: float, every: float = 0.05) -> bool:
    """A counter the harness cannot be told about (an SDK callback's, a sink's) reached its goal: polled."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)
    return True


async def measure(
    publishers: Publishers,
    received: Callable[[], int],
    others: Callable[[], list[psutil.Process]],
    idle_s: float,
) -> dict[str, Any]:
    """An idle window (connected, nothing sent), then send and take every message: this process's CPU (also
    net of the idle rate: the marginal cost of the messages), its loop lag, framepool's other processes'."""
    me = psutil.Process()
    probe = LagProbe()
    idle0 = cpu_seconds([me])
    await asyncio.sleep(idle_s)
    idle_rate = (cpu_seconds([me]) - idle0) / idle_s
    extra = others()
    cpu0, extra0, t0, first_lag = cpu_seconds([me]), cpu_seconds(extra), time.monotonic(), len(probe.lags)
    publishers.go()
    done = await publishers.event("done")
    drained = await until(lambda: received() >= done["sent"], DRAIN_TIMEOUT)
    cpu, extra_cpu, span = cpu_seconds([me]) - cpu0, cpu_seconds(extra) - extra0, time.monotonic() - t0
    lags = np.array(probe.lags[first_lag:] or [0.0]) * 1000
    await probe.stop()
    taken = max(1, received())
    return {
        "sent": done["sent"],
        "received": received(),
        "drained": drained,
        "send_late_ms_max": round(done["late_ms_max"], 1),
        "seconds": round(span, 2),
        "cpu_pct": round(100 * cpu / span, 1),
        "idle_cpu_pct": round(100 * idle_rate, 1),
        "cpu_ms_per_1k": round(1e6 * cpu / taken, 2),
        "marginal_cpu_ms_per_1k": round(1e6 * (cpu - idle_rate * span) / taken, 2),
        "others_cpu_ms_per_1k": round(1e6 * extra_cpu / taken, 2),
        "lag": {f"{name}_ms": round(float(f(lags)), 3) for name, f in LAG_STATS.items()},
    }


LAG_STATS: dict[str, Callable[[Any], Any]] = {
    "p50": lambda a: np.percentile(a, 50),
    "p99": lambda a: np.percentile(a, 99),
    "max": np.max,
}


async def phase_sdk(url: str, cfg: Config) -> dict[str, Any]:
    room_name, count = f"sdk-{uuid.uuid4().hex[:6]}", [0]
    room = rtc.Room()

    def noop(packet: rtc.DataPacket) -> None:
        count[0] += 1

    room.on("data_received", noop)
    await room.connect(url, token("receiver", room_name))
    try:
        publishers = await Publishers.start(url, room_name, "receiver", cfg)
        try:
            return await measure(publishers, lambda: count[0], lambda: [], idle_window(cfg))
        finally:
            await publishers.close()
    finally:
        await room.disconnect()


def taken_by_framepool(server: AgentServer) -> int:
    return sum(plane.counters["ToBridge"] for job in server.jobs.values() for plane in job.ctx.dataplanes)


def framepool_children(excluded: set[int]) -> list[psutil.Process]:
    """This process's descendants that are framepool's (bridge, workers): all but the harness's helpers."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid not in excluded and not any(p.pid in excluded for p in child.parents()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


async def phase_framepool(
    url: str,
    cfg: Config,
    sink: SinkSpec,
    arrivals: Callable[[], Awaitable[dict[str, float]]] | None,
    excluded: set[int],
) -> dict[str, Any]:
    flow = {"route": [{"match": {"topic": "telemetry"}, "to_bridges": [sink.name]}]}
    with tempfile.TemporaryDirectory(prefix="framepool-bench-spool-") as spool_dir:
        settings = Settings(
            livekit_url=url, api_key=API_KEY, api_secret=API_SECRET, workers=1, log_level="warning",
            sinks=[sink], spool_dir=spool_dir, bridge_stop_timeout=0.0 if arrivals is None else 10.0,
        )  # fmt: skip
        server = AgentServer(settings, load_fnc=lambda _server: 0.0)
        server.agents.extend(build_agents([AgentSpec(agent_name="", data=flow)]))
        serving = asyncio.create_task(server.run())
        try:
            await asyncio.wait_for(server.registered.wait(), 60)
            room_name = f"{sink.name}-{uuid.uuid4().hex[:6]}"
            publishers = await Publishers.start(url, room_name, "agent", cfg)
            try:
                excluded.add(publishers.proc.pid)
                result = await measure(
                    publishers,
                    lambda: taken_by_framepool(server),
                    lambda: framepool_children(excluded),
                    idle_window(cfg),
                )
                result["refused"] = sum(
                    plane.counters["bridge_refused"]
                    for job in server.jobs.values()
                    for plane in job.ctx.dataplanes
                )
                if arrivals is not None:
                    result.update(await at_sink(arrivals, result["sent"]))
            finally:
                await publishers.close()
        finally:
            server.stop()
            await asyncio.gather(serving, return_exceptions=True)
    return result


async def at_sink(arrivals: Callable[[], Awaitable[dict[str, float]]], sent: int) -> dict[str, Any]:
    """Every event read back from the sink: intake → commit latency, and how many never arrived."""
    found: dict[str, float] = {}
    deadline = time.monotonic() + SINK_TIMEOUT
    while len(found) < sent and time.monotonic() < deadline:
        found = await arrivals()
        if len(found) < sent:
            await asyncio.sleep(0.5)
    latencies = np.array(list(found.values()) or [0.0])
    return {
        "at_sink": len(found),
        "lost": sent - len(found),
        "commit_ms_p50": round(float(np.percentile(latencies, 50)), 1),
        "commit_ms_p99": round(float(np.percentile(latencies, 99)), 1),
        "commit_ms_max": round(float(latencies.max()), 1),
    }


async def run(cfg: Config, say: Callable[[str], None]) -> dict[str, Any]:
    devserver = DevServerProcess()
    await devserver.start()
    assert devserver.proc is not None
    excluded = {devserver.proc.pid}
    phases: dict[str, Any] = {}
    try:
        say(f"sdk: {cfg.participants} x {cfg.rate:g}/s x {cfg.size} B for {cfg.seconds:g} s ...")
        phases["sdk"] = await phase_sdk(devserver.url, cfg)
        for kind, running, make_sink, read in (
            ("redis", sinks.redis_running, lambda s: _ready(sinks.redis_sink(s.url)), sinks.redis_arrivals),
            (
                "postgres",
                sinks.postgres_running,
                lambda s: sinks.postgres_sink(s.dsn),
                sinks.postgres_arrivals,
            ),
        ):
            reason = sinks.missing(kind)
            if reason is not None:
                say(f"{kind}: skipped, {reason}")
                phases[kind] = {"skipped": reason}
                continue
            say(f"{kind}: ...")
            with running() as db:
                excluded.add(db.server.proc.pid)  # type: ignore[union-attr]
                target = db.url if kind == "redis" else db.dsn
                spec = await make_sink(db)
                phases[kind] = await phase_framepool(
                    devserver.url, cfg, spec, lambda t=target, r=read: r(t), excluded
                )
        say("sink-down: ...")
        phases["sink_down"] = await phase_framepool(devserver.url, cfg, sinks.down_sink(), None, excluded)
    finally:
        await devserver.stop()
    return phases


async def _ready(spec: SinkSpec) -> SinkSpec:
    return spec


def verdict(phases: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    sdk = phases["sdk"]["marginal_cpu_ms_per_1k"]
    ratios: dict[str, Any] = {}
    for kind in ("redis", "postgres", "sink_down"):
        phase = phases.get(kind, {})
        if "marginal_cpu_ms_per_1k" in phase:
            own = phase["marginal_cpu_ms_per_1k"] - sdk
            ratios[kind] = {"own_cpu_ms_per_1k": round(own, 2), "own_over_sdk": round(own / sdk, 2)}
    measured = [k for k in ("redis", "postgres") if "lost" in phases.get(k, {})]
    targets = {
        "own_over_sdk_max": TARGET_RATIO,
        "own_over_sdk_ok": all(r["own_over_sdk"] <= TARGET_RATIO for r in ratios.values()),
        "lag_p99_sink_down_ms": phases["sink_down"]["lag"]["p99_ms"],
        "lag_p99_sink_down_ok": phases["sink_down"]["lag"]["p99_ms"] < TARGET_LAG_MS,
        "lost": {k: phases[k]["lost"] for k in measured},
        "lost_ok": all(phases[k]["lost"] == 0 for k in measured)
        and all(phases[k]["received"] == phases[k]["sent"] for k in ("sdk", *measured, "sink_down")),
    }
    return ratios, targets


def environment() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    return {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} x {model}",
        "python": platform.python_version(),
        "livekit": version("livekit"),
        "load_avg_at_start": os.getloadavg()[0],
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"{'phase':<10} {'sent':>7} {'taken':>7} {'cpu %':>6} {'idle %':>6} {'ms/1k':>7} {'net':>7} "
        f"{'others':>7} {'lag p50':>7} {'p99':>6} {'max':>6} {'at sink':>7} {'lost':>5} {'commit p50':>10} "
        f"{'p99':>6}"
    ]
    for name, p in report["phases"].items():
        lines.append(f"{name:<10} skipped: {p['skipped']}" if "skipped" in p else row(name, p))
    for name, r in report["ratios"].items():
        lines.append(
            f"framepool's own cost ({name}): {r['own_cpu_ms_per_1k']:.1f} ms CPU per 1,000 messages, "
            f"{r['own_over_sdk']:.2f}x the SDK's receive cost (target <= {TARGET_RATIO})"
        )
    lines.append(f"targets: {json.dumps(report['targets'])}")
    return "\n".join(lines)


def row(name: str, p: dict[str, Any]) -> str:
    lag = p["lag"]
    sink = (
        f"{p['at_sink']:>7} {p['lost']:>5} {p['commit_ms_p50']:>10.1f} {p['commit_ms_p99']:>6.1f}"
        if "at_sink" in p
        else f"{'-':>7} {'-':>5} {'-':>10} {'-':>6}"
    )
    return (
        f"{name:<10} {p['sent']:>7} {p['received']:>7} {p['cpu_pct']:>6.1f} {p['idle_cpu_pct']:>6.1f} "
        f"{p['cpu_ms_per_1k']:>7.1f} {p['marginal_cpu_ms_per_1k']:>7.1f} {p['others_cpu_ms_per_1k']:>7.1f} "
        f"{lag['p50_ms']:>7.2f} {lag['p99_ms']:>6.2f} {lag['max_ms']:>6.1f} {sink}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="10 participants for 10 s per phase")
    parser.add_argument("--participants", type=int)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--bytes", type=int, default=200)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    cfg = Config(
        participants=args.participants or (10 if args.quick else 50),
        rate=args.rate,
        size=args.bytes,
        seconds=args.seconds or (10.0 if args.quick else 60.0),
    )
    env = environment()
    phases = framepool_loop.run(run(cfg, lambda text: print(text, file=sys.stderr, flush=True)))
    ratios, targets = verdict(phases)
    report = {"env": env, "config": cfg.__dict__, "phases": phases, "ratios": ratios, "targets": targets}
    print(json.dumps(report, indent=2) if args.json else table(report))
    ok = targets["lost_ok"] and targets["lag_p99_sink_down_ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
