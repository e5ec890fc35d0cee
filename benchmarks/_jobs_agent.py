"""framepool side of the jobs benchmark (its own process tree): an AgentServer as `framepool start` runs it.

One explicitly dispatched agent (`--agent-name`) whose entrypoint joins without auto-subscription and
attaches `audio-level(window_ms=100)` to every audio track (the supervisor asks the SDK for frames as long
as the processor's window, 100 ms: audio-level's default frame size), results as reliable data on the
benchmark's topic: the same job as `[[agents]] audio = ["audio-level(window_ms=100)"]` in a TOML config,
written in Python so this process can also answer the harness's `stats` request with the pool's and the
feeds' drop counters, which a `framepool start` process does not expose. It runs under
`framepool.agent.drain.serve` on the loop `framepool start` uses (`framepool.loop.run`: uvloop), so
SIGTERM drains as there.

Requests: stats -> {jobs, feeds, frames, dropped, lost, results_dropped, results_sent, restarts, workers,
load, rooms: {room: [frames, results_sent]}};
assigned {room} -> {t}: when the room's job assignment reached the daemon (CLOCK_MONOTONIC);
python_memory {top} -> {traced_bytes, growth: [[where, bytes, blocks]]}: with --tracemalloc only, the Python
allocations that grew since the previous such request, by line (where framepool's per-job memory goes).
Events: registered (every agent registered with the server).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
from typing import Any

from _jobs_child import emit, serve_requests
from livekit.protocol import agent as agent_pb

from framepool import loop as framepool_loop
from framepool.agent.job import JobContext, RunningJob, StatusReporter
from framepool.agent.server import Agent, AgentServer
from framepool.agent.session import DataOutput
from framepool.logs import setup_logging
from framepool.service import Supervisor
from framepool.settings import Settings


class TimedAgentServer(AgentServer):
    """Records when each job's assignment reached this daemon, to split the start latency in two."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.assigned: dict[
            str, float
        ] = {}  # room -> CLOCK_MONOTONIC (system-wide, like the harness's clock)

    def launch(
        self, agent: Agent, job: agent_pb.Job, url: str, token: str, report: StatusReporter
    ) -> RunningJob:
        self.assigned[job.room.name] = time.monotonic()
        return super().launch(agent, job, url, token, report)


def build_server(args: argparse.Namespace) -> TimedAgentServer:
    settings = Settings(
        livekit_url=args.url,
        api_key=args.key,
        api_secret=args.secret,
        workers=args.workers,
        load_threshold=args.load_threshold,
        single_peer_connection=args.single_peer_connection,
        drain_timeout=2.0,
        shutdown_timeout=5.0,
        log_level="warning",
        log_format="text",
    )
    server = TimedAgentServer(settings)

    @server.rtc_session(agent_name=args.agent_name)
    async def levels(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        ctx.attach(args.processor, output=DataOutput(topic=args.topic))

    return server


def stats(server: AgentServer) -> dict[str, Any]:
    totals: dict[str, float] = {
        "jobs": len(server.jobs),
        "feeds": 0,
        "frames": 0,
        "dropped": 0,
        "lost": 0,
        "results_dropped": 0,
        "results_sent": 0,
    }
    rooms: dict[str, list[int]] = {}  # room -> [frames read from the SDK, results published]
    for job in server.jobs.values():
        session = job.ctx.session
        totals["results_sent"] += session.results_sent
        rooms[session.room_name] = [
            sum(f.frames for rule in session.rules for f in rule.feeds.values()),
            session.results_sent,
        ]
        for rule in session.rules:
            for feed in rule.feeds.values():
                totals["feeds"] += 1
                totals["frames"] += feed.frames
                totals["dropped"] += feed.dropped
                if feed.attachment is not None:
                    stream = feed.attachment.stats()
                    totals["lost"] += stream.lost
                    totals["results_dropped"] += stream.results_dropped
                    # Ring drops are counted by the ring; feed.dropped counts only the pushes it refused.
                    totals["dropped"] += max(0, stream.dropped - feed.dropped)
    pool = server.pool.stats() if server.pool is not None else None
    totals["restarts"] = pool.restarts if pool else 0
    totals["workers"] = len(pool.workers) if pool else 0
    totals["load"] = server.load.measured
    return {**totals, "rooms": rooms}


class PythonMemory:
    """tracemalloc snapshots, each compared with the previous one (a diagnostic: tracing slows the
    process)."""

    def __init__(self) -> None:
        self.previous: tracemalloc.Snapshot | None = None

    async def growth(self, request: dict[str, Any]) -> dict[str, Any]:
        if not tracemalloc.is_tracing():
            raise RuntimeError("python_memory needs --tracemalloc")
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        previous, self.previous = self.previous, snapshot
        if previous is None:
            return {"traced_bytes": tracemalloc.get_traced_memory()[0], "growth": []}
        stats = snapshot.compare_to(previous, "lineno")[: int(request.get("top", 25))]
        return {
            "traced_bytes": tracemalloc.get_traced_memory()[0],
            "growth": [[str(s.traceback), s.size_diff, s.count_diff] for s in stats],
        }


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--agent-name", default="jobbench")
    parser.add_argument("--topic", default="levels")
    parser.add_argument("--processor", default="audio-level(window_ms=100)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--load-threshold", type=float, default=0.75)
    parser.add_argument("--single-peer-connection", action="store_true", help="join rooms over /rtc/v1")
    parser.add_argument("--tracemalloc", action="store_true", help="trace Python allocations (python_memory)")
    args = parser.parse_args(argv)
    if args.tracemalloc:
        tracemalloc.start(1)
    setup_logging("warning", "text")
    server = build_server(args)

    async def report(request: dict[str, Any]) -> dict[str, Any]:
        return stats(server)

    async def assigned(request: dict[str, Any]) -> dict[str, Any]:
        return {"t": server.assigned.get(request["room"])}

    async def announce() -> None:
        await server.registered.wait()
        emit({"event": "registered", "workers": server.pool.worker_pids() if server.pool else []})

    serving = asyncio.create_task(Supervisor(server).run())
    announcing = asyncio.create_task(announce())
    memory = PythonMemory()
    requests = asyncio.create_task(
        serve_requests({"stats": report, "assigned": assigned, "python_memory": memory.growth})
    )
    await asyncio.wait([serving, requests], return_when=asyncio.FIRST_COMPLETED)
    announcing.cancel()
    requests.cancel()
    if not serving.done():  # stdin closed: the harness is gone; stop without draining
        server.stop()
    return await serving


if __name__ == "__main__":
    sys.exit(framepool_loop.run(main(sys.argv[1:])))
