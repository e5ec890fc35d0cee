"""The /status document, built from the Supervisor, its agent server and its worker pool (supervisor process).

Every field is always present (msgspec Structs without `omit_defaults`: no proto3-style omission), so a
reader never has to guess whether a missing figure means zero. The figures come from the objects that own
them and are read at request time, never copied on a timer: the agent connections (registration, worker id,
the load and status last sent to LiveKit), the jobs, the pool's workers (CPU seconds and PSS read from /proc
here, cached for `PROCESS_TTL` so a burst of scrapes costs one read per worker: the pool's own PSS figure is
a heartbeat old, zero in a worker's first second) and streams (ring counters, occupancy), and the data
plane's counters.

Totals never decrease over the daemon's life: a detached stream's final counts stay in the pool
(`WorkerPool.stream_totals`) and an ended job's data-plane counters in `StatusSources`, which must be
created before the first job starts. The metrics exporter reads the same sources: `build_status` for the
document, or the per-section functions (`agent_entries`, `worker_entries`, `stream_entries`, `totals`,
`data_counters`) that each take the Supervisor and the StatusSources.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

import msgspec
import psutil
from livekit.protocol import agent as agent_pb

import framepool
from framepool.ops.health import liveness, loop_lag, readiness

if TYPE_CHECKING:
    from framepool.agent.connection import AgentConnection
    from framepool.agent.job import RunningJob
    from framepool.agent.server import AgentServer
    from framepool.pool.contract import StreamStats
    from framepool.pool.stream import StreamAttachment
    from framepool.service import Supervisor

PROCESS_TTL = 1.0  # seconds a worker's CPU time and PSS read from /proc are reused
# Why a frame did not reach the processors, and the StreamStats counter that says how many.
FRAME_DROP_REASONS = {"ring_full": "dropped", "skipped": "skipped", "worker_lost": "lost"}
# Data-plane counters reported even while no job ran (more appear when a data flow counts something new).
DATA_COUNTERS = (
    *(f"intake_{name}" for name in ("received", "rate_limited", "refused", "streams_over_cap")),
    *(f"intake_{name}" for name in ("streams_refused", "stream_errors", "rpc_saturated")),
    *(f"dataflow_{name}" for name in ("publish_data", "send_text", "set_attributes", "to_bridge")),
    *(f"dataflow_{name}" for name in ("to_processors", "room_service_action", "bridge_refused")),
    *(f"data_processors_{name}" for name in ("sent", "oversize", "dropped", "lost", "processed")),
    *(f"data_processors_{name}" for name in ("results", "results_dropped_rate")),
    *(f"room_outputs_{name}" for name in ("sent", "dropped", "failed", "attribute_updates")),
    "results_sent", "results_dropped_outbox", "results_dropped_rate",
    "blobs_sent", "blobs_dropped", "blobs_failed", "blobs_dropped_rate",
    "spool_appended", "spool_refused", "spool_appended_bytes", "spool_disk_bytes", "bridge_restarts",
)  # fmt: skip


class LoopFigures(msgspec.Struct, kw_only=True):
    lag_ms: float  # the worst lag of the last few seconds
    stalls: int  # ticks of the lag monitor later than its warning threshold, since start


class AgentEntry(msgspec.Struct, kw_only=True):
    name: str
    job_type: str  # room, publisher, participant
    state: str  # connecting, registered, reconnecting, closed, failed
    worker_id: str  # from LiveKit's registration response ("" before the first)
    load: float  # as last sent to LiveKit (UpdateWorkerStatus)
    status: str  # available or full, as last sent
    jobs: int
    reconnects: int


class JobEntry(msgspec.Struct, kw_only=True):
    id: str
    agent: str
    room: str
    started_at: float  # unix seconds
    streams: int


class WorkerEntry(msgspec.Struct, kw_only=True):
    index: int
    pid: int | None
    cpu: int | None
    state: str
    pss_bytes: int
    cpu_seconds: float
    streams: int
    restarts: int


class StreamEntry(msgspec.Struct, kw_only=True):
    id: str
    job: str
    room: str
    participant: str
    track: str
    kind: str
    worker: int | None
    frames_in: int  # offered to the ring
    frames_out: int  # handed to the processors
    drops: dict[str, int]  # by FRAME_DROP_REASONS
    ring_occupancy: float  # 0..1


class Totals(msgspec.Struct, kw_only=True):
    frames_in: int
    frames_out: int
    drops: dict[str, int]
    results: int


class Status(msgspec.Struct, kw_only=True):
    version: str
    pid: int
    started_at: float
    uptime_s: float
    phase: str
    live: bool
    ready: bool
    live_reason: str
    ready_reason: str
    loop: LoopFigures
    agents: list[AgentEntry]
    jobs: list[JobEntry]
    workers: list[WorkerEntry]
    streams: list[StreamEntry]
    totals: Totals
    data: dict[str, int]


class ProcessFigures(NamedTuple):
    cpu_seconds: float  # user + system
    pss_bytes: int


class ProcessSampler:
    """CPU time and PSS of processes, read from /proc (smaps_rollup: tens of microseconds) at most once per
    `ttl` for each pid; a process that is gone reads as zeros."""

    def __init__(self, ttl: float = PROCESS_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._read: dict[int, tuple[float, ProcessFigures]] = {}  # pid -> (read at, figures)

    def figures(self, pids: Iterable[int]) -> dict[int, ProcessFigures]:
        now, figures = self._clock(), {}
        for pid in pids:
            read_at, known = self._read.get(pid, (-float("inf"), ProcessFigures(0.0, 0)))
            if now - read_at >= self.ttl:
                with contextlib.suppress(psutil.Error):
                    process = psutil.Process(pid)
                    times = process.cpu_times()
                    known = ProcessFigures(
                        float(times.user + times.system), int(process.memory_full_info().pss)
                    )
                self._read[pid] = (now, known)
            figures[pid] = known
        self._read = {pid: self._read[pid] for pid in figures}  # forget processes that are gone
        return figures


class StatusSources:
    """What status building keeps between requests: counters of ended jobs, cached process figures."""

    def __init__(self, server: AgentServer) -> None:
        self.started_at = psutil.Process().create_time()
        self.processes = ProcessSampler()
        self.ended_jobs_data: collections.Counter[str] = collections.Counter()
        server.job_ended.append(self._job_ended)

    def _job_ended(self, running: RunningJob) -> None:
        self.ended_jobs_data.update(job_data_counters(running))


def build_status(supervisor: Supervisor, sources: StatusSources) -> Status:
    """The whole /status document (module docstring)."""
    live, ready = liveness(supervisor), readiness(supervisor)
    attachments = supervisor.pool.streams() if supervisor.pool is not None else []
    stats = [(attachment, attachment.stats()) for attachment in attachments]  # once per stream and scrape
    return Status(
        version=framepool.__version__,
        pid=os.getpid(),
        started_at=sources.started_at,
        uptime_s=time.time() - sources.started_at,
        phase=supervisor.phase.value,
        live=live.ok,
        ready=ready.ok,
        live_reason=live.reason,
        ready_reason=ready.reason,
        loop=LoopFigures(lag_ms=loop_lag(supervisor) * 1000, stalls=supervisor.loop_lag.stalls),
        agents=agent_entries(supervisor),
        jobs=job_entries(supervisor, attachments),
        workers=worker_entries(supervisor, sources),
        streams=stream_entries(stats),
        totals=totals(supervisor, stats),
        data=data_counters(supervisor, sources),
    )


def agent_entries(supervisor: Supervisor) -> list[AgentEntry]:
    server = supervisor.server
    return [_agent_entry(server, connection) for connection in server.connections]


def _agent_entry(server: AgentServer, connection: AgentConnection) -> AgentEntry:
    registration = connection.registration
    sent = connection.last_status
    load, full = (sent.load, sent.full) if sent is not None else (server.load.measured, True)
    jobs = [
        r.ctx.job
        for r in server.jobs.values()
        if (r.ctx.job.agent_name, r.ctx.job.type) == (registration.agent_name, registration.job_type)
    ]
    return AgentEntry(
        name=registration.agent_name or "(automatic)",
        job_type=agent_pb.JobType.Name(registration.job_type).removeprefix("JT_").lower(),
        state=connection.state,
        worker_id=connection.worker_id,
        load=load,
        status="full" if full else "available",
        jobs=len(jobs),
        reconnects=max(0, connection.connections - 1),
    )


def job_entries(supervisor: Supervisor, attachments: list[StreamAttachment]) -> list[JobEntry]:
    per_job = collections.Counter(a.spec.labels.get("job", "") for a in attachments)
    return [
        JobEntry(
            id=job_id,
            agent=running.ctx.job.agent_name or "(automatic)",
            room=running.ctx.job.room.name,
            started_at=running.started_at,
            streams=per_job[job_id],
        )
        for job_id, running in supervisor.server.jobs.items()
    ]


def worker_entries(supervisor: Supervisor, sources: StatusSources) -> list[WorkerEntry]:
    if supervisor.pool is None:
        return []
    workers = supervisor.pool.stats().workers
    measured = sources.processes.figures(w.pid for w in workers if w.pid)
    return [
        WorkerEntry(
            index=w.slot,
            pid=w.pid or None,
            cpu=w.cpu,
            state=w.state,
            pss_bytes=measured[w.pid].pss_bytes if w.pid else 0,
            cpu_seconds=measured[w.pid].cpu_seconds if w.pid else 0.0,
            streams=w.streams,
            restarts=w.restarts,
        )
        for w in workers
    ]


def stream_entries(streams: list[tuple[StreamAttachment, StreamStats]]) -> list[StreamEntry]:
    entries = []
    for attachment, stats in streams:
        labels = attachment.spec.labels
        entries.append(
            StreamEntry(
                id=attachment.stream_id,
                job=labels.get("job", ""),
                room=labels.get("room", ""),
                participant=labels.get("participant", ""),
                track=labels.get("track", ""),
                kind=attachment.spec.kind,
                worker=stats.worker if stats.worker >= 0 else None,
                frames_in=stats.pushed,
                frames_out=stats.processed,
                drops={reason: getattr(stats, field) for reason, field in FRAME_DROP_REASONS.items()},
                ring_occupancy=attachment.occupancy(),
            )
        )
    return entries


def totals(supervisor: Supervisor, streams: list[tuple[StreamAttachment, StreamStats]]) -> Totals:
    """Over the daemon's life: the streams attached now plus the final counts of those detached."""
    counts: collections.Counter[str] = collections.Counter()
    if supervisor.pool is not None:
        live = [(attachment.spec.kind, stats) for attachment, stats in streams]
        for figures in supervisor.pool.stream_totals(live).by_kind.values():
            counts.update({name: int(value) for name, value in figures.items()})
    return Totals(
        frames_in=counts["pushed"],
        frames_out=counts["processed"],
        drops={reason: counts[field] for reason, field in FRAME_DROP_REASONS.items()},
        results=counts["results"],
    )


def data_counters(supervisor: Supervisor, sources: StatusSources) -> dict[str, int]:
    """Data-plane counters since start: ended jobs', running jobs', the spools' and the bridge's."""
    counts = collections.Counter(dict.fromkeys(DATA_COUNTERS, 0))
    counts.update(sources.ended_jobs_data)
    for running in supervisor.server.jobs.values():
        counts.update(job_data_counters(running))
    bridges = supervisor.server.bridges
    for writer in bridges.spools.values():
        stats = writer.stats
        counts.update(
            spool_appended=stats.appended,
            spool_refused=stats.refused,
            spool_appended_bytes=stats.appended_bytes,
            spool_disk_bytes=stats.disk_bytes,
        )
    counts["bridge_restarts"] += bridges.host.restarts if bridges.host is not None else 0
    return dict(counts)


def job_data_counters(running: RunningJob) -> collections.Counter[str]:
    """One job's data-plane counters (intake, data flows, data processors, room outputs, results, blobs)."""
    ctx, counts = running.ctx, collections.Counter[str]()
    for intake in ctx.intakes:
        figures = msgspec.structs.asdict(intake.stats())
        counts.update(
            {f"intake_{k}": sum(v.values()) if isinstance(v, dict) else v for k, v in figures.items()}
        )
    for plane in ctx.dataplanes:
        counts.update({f"dataflow_{_snake(k)}": v for k, v in plane.counters.items()})
    for feed in dict.fromkeys(ctx.data_processors.values()):
        figures = msgspec.structs.asdict(feed.stats())
        counts.update({f"data_processors_{k}": v for k, v in figures.items()})
    counts.update({f"room_outputs_{k}": v for k, v in msgspec.structs.asdict(ctx.outputs.stats()).items()})
    session = ctx.session.stats()
    for name in ("results_sent", "results_dropped_outbox", "results_dropped_rate", "blobs_dropped_rate"):
        counts[name] += session[name]
    counts.update({f"blobs_{k}": v for k, v in session["blobs"].items()})
    return counts


def _snake(name: str) -> str:
    """PublishData -> publish_data (the data plane counts intents by their class name)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def encode(status: Status) -> bytes:
    """The JSON body of /status."""
    return msgspec.json.encode(status)
