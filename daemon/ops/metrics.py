"""Prometheus metrics of the daemon, read from the Supervisor at scrape time (supervisor process).

`Metrics(supervisor).render()` is the body of GET /metrics (`CONTENT_TYPE`): Prometheus text, written by
`framepool.ops.families` (not the client library's registry: see there why). docs/metrics.md lists every
family with its type, labels and meaning.

`Metrics.collect` yields every family when scraped, from figures the daemon keeps anyway: the
Supervisor's phase and health, each agent connection's state, the job table, the pool's slots and streams
(`framepool.ops.pool_metrics`), the data plane (`framepool.ops.data_metrics`), and the distributions
the loop-lag monitor and the pool record into (`framepool.distribution`). The alternative, client-library
Counter and Gauge objects updated where things happen, was rejected: it puts the library's lock on the
frame paths and duplicates counters the daemon already has. What must outlive its owner is folded into
a retained total when the owner goes, so no `_total` ever decreases: a worker's CPU and its rings'
counters (in the pool), a detached stream's counters (in the pool), an ended job's outcome, its
dispatch-to-first-frame latency and its data-plane counters (here, through `AgentServer.job_ended`).

Labels are bounded by configuration, never by traffic: `agent` and `job_type` come from the registered
agents, `worker` is a slot index, `kind`, `reason`, `state`, `outcome` and `decision` are fixed sets, `sink`
a configured sink. Rooms, jobs, participants and tracks are summed over, never labels; there is no host
label (the scraper adds the target's).
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from livekit.protocol import agent as agent_pb

import framepool
from framepool.agent.job import RunningJob
from framepool.agent.server import REQUEST_DECISIONS, AgentServer
from framepool.distribution import Distribution
from framepool.ops.data_metrics import JobFigures, data_families
from framepool.ops.families import Family, counter, gauge, histogram, render
from framepool.ops.pool_metrics import pool_families

if TYPE_CHECKING:
    from framepool.service import Supervisor

# The classic text format, which every Prometheus (2.x too) reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds from a job's assignment to its first frame handed to the pool: joining the room, subscribing,
# the first decoded frame; LiveKit's own dispatch is before it.
DISPATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """See the module docstring. Create once per Supervisor, before it starts jobs; `render()` per scrape."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.jobs = JobLedger()
        supervisor.server.job_ended.append(self.jobs.ended)

    def render(self) -> bytes:
        """Every family, in Prometheus text exposition format (version 0.0.4)."""
        return render(list(self.collect()))

    def collect(self) -> Iterator[Family]:
        supervisor, ledger = self.supervisor, self.jobs
        server = supervisor.server
        running = list(server.jobs.values())
        for job in running:
            ledger.time_first_frame(job)
        yield from daemon_families(supervisor)
        yield from agent_families(server)
        yield from job_families(server, ledger, running)
        yield from pool_families(supervisor.pool)
        yield from data_families(ledger.data.totals(running), server.bridges)


def agent_label(agent_name: str) -> str:
    return agent_name or "(automatic)"


class JobLedger:
    """What ended jobs leave behind for metrics: outcomes, dispatch latency, data-plane counters."""

    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (agent, outcome)
        self.dispatch = Distribution(DISPATCH_BUCKETS)
        self.data = JobFigures()
        self._timed: set[str] = set()  # running jobs whose first frame is counted in `dispatch`

    def ended(self, job: RunningJob) -> None:
        """AgentServer.job_ended observer: called once per job after its final status report."""
        self.time_first_frame(job)
        self._timed.discard(job.id)
        outcome = agent_pb.JobStatus.Name(job.status).removeprefix("JS_").lower()
        self.outcomes[agent_label(job.ctx.job.agent_name), outcome] += 1
        self.data.ended(job)

    def time_first_frame(self, job: RunningJob) -> None:
        session = job.ctx.session
        if session.first_frame_at and job.id not in self._timed:
            self._timed.add(job.id)
            self.dispatch.observe(session.first_frame_at - session.started_at)


def daemon_families(supervisor: Supervisor) -> Iterator[Family]:
    health = supervisor.health
    yield gauge(
        "framepool_build_info",
        "Always 1; the labels say which framepool and Python run.",
        ["version", "python"],
        {(framepool.__version__, platform.python_version()): 1},
    )
    yield gauge(
        "framepool_ready",
        "1 when the daemon takes jobs: ready phase, every agent registered, the pool not halted.",
        [],
        {(): float(health.ready)},
    )
    yield gauge(
        "framepool_draining",
        "1 while draining after a stop signal (FULL to LiveKit, running jobs may finish).",
        [],
        {(): float(health.phase.value == "draining")},
    )
    lag = supervisor.loop_lag
    yield histogram(
        "framepool_loop_lag_seconds",
        "How late the supervisor's event loop ran a timer set every 0.25 s (what every frame waits behind).",
        lag.lags,
    )
    yield counter(
        "framepool_loop_stalls",
        f"Timer ticks the supervisor's event loop ran more than {lag.warn_above:g} s late.",
        [],
        {(): lag.stalls},
    )


def agent_families(server: AgentServer) -> Iterator[Family]:
    agents = {
        (agent_label(c.registration.agent_name), agent_pb.JobType.Name(c.registration.job_type)): c
        for c in server.connections
    }
    labels = ["agent", "job_type"]
    yield gauge(
        "framepool_agent_connected",
        "1 while the agent is registered with LiveKit (0 while connecting or reconnecting).",
        labels,
        {key: float(c.registered.is_set()) for key, c in agents.items()},
    )
    yield counter(
        "framepool_agent_reconnects",
        "Registrations after the first: the agent's connection to LiveKit dropped and was made again.",
        labels,
        {key: max(0, c.connections - 1) for key, c in agents.items()},
    )
    yield gauge(
        "framepool_load_ratio",
        "The load last reported to LiveKit (UpdateWorkerStatus), 0..1, the same for every agent.",
        [],
        {(): server.load.measured},
    )
    yield gauge(
        "framepool_available",
        "1 when the daemon reports itself available to LiveKit, 0 when full or draining.",
        [],
        {(): float(not server.load.full(server.draining))},
    )


def job_families(server: AgentServer, ledger: JobLedger, running: list[RunningJob]) -> Iterator[Family]:
    active = Counter(agent_label(job.ctx.job.agent_name) for job in running)
    for agent in server.agents:
        active.setdefault(agent_label(agent.agent_name), 0)
    yield gauge(
        "framepool_jobs_active",
        "Jobs running now, by agent.",
        ["agent"],
        {(a,): n for a, n in active.items()},
    )
    yield counter(
        "framepool_jobs",
        "Jobs that ended, by agent and outcome (success, failed).",
        ["agent", "outcome"],
        dict(ledger.outcomes),
    )
    yield counter(
        "framepool_job_requests",
        "Job requests (AvailabilityRequest) by decision: accepted or rejected by the agent's request "
        "function, or declined because the daemon was full or draining.",
        ["decision"],
        {(decision,): server.job_requests[decision] for decision in REQUEST_DECISIONS},
    )
    yield counter(
        "framepool_job_assignment_timeouts",
        "Accepted job requests LiveKit did not assign within assignment_timeout.",
        [],
        {(): server.assignment_timeouts},
    )
    yield histogram(
        "framepool_dispatch_to_first_frame_seconds",
        "From a job's assignment to its first frame handed to the worker pool.",
        ledger.dispatch,
    )
