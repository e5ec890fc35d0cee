"""AgentServer: the agents one daemon registers, their jobs, the shared worker pool, load and drain
(supervisor process).

Unlike livekit-agents, one daemon registers several agents: each (agent name, job type) has its own
`AgentConnection`, and all of them share one `WorkerPool`, one load figure and one job table, so
LiveKit sees every connection of this daemon go FULL together.

Lifetime, in the steps the daemon's `framepool.service.Supervisor` runs as its phases and stop-ladder
rungs: `start()` (the pool, every agent's prewarm hook, the connections), `serve()` (connected and
registered until `stop()` or a failure), `begin_drain()` (FULL on every connection, nothing new accepted;
`drained` is set once no job runs), `end_jobs()` / `jobs_ended()` (every job's own shutdown ladder),
`disconnect()`. `run()` and `aclose()` are the same steps without signals, drain or the Supervisor's
clock, for code that embeds an AgentServer in its own process.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from livekit.protocol import agent as agent_pb
from livekit.protocol import models

from framepool.agent.connection import WS_CLOSE_TIMEOUT, AgentConnection
from framepool.agent.dataplane import Bridges
from framepool.agent.job import Entrypoint, JobContext, JobRequest, RunningJob, SharedState, StatusReporter
from framepool.agent.load import CpuMeter, LoadTracker
from framepool.agent.registration import (
    ConnectionOptions,
    DaemonStatus,
    Registration,
    default_permissions,
    ws_url,
)
from framepool.bridge import registry as sink_registry
from framepool.bridge.registry import SinkSpec
from framepool.errors import ConfigError, FramepoolError, PoolHaltedError, ProcessorError
from framepool.logs import log_context
from framepool.pool import WorkerPool
from framepool.processors.registry import ProcessorSpec
from framepool.settings import Settings
from framepool.tasks import TaskSet, first_of

log = logging.getLogger("framepool.agent.server")

# Beyond a job's shutdown ladder (bounded by shutdown_timeout): cancelling its entrypoint and reporting the
# status.
REPORT_GRACE = 1.0
# `disconnect`: job statuses queued while disconnected get AGENT_FLUSH_GRACE to go out (every agent at once),
# then the connections AGENT_CLOSE_TIMEOUT to close (the websocket close handshake, WS_CLOSE_TIMEOUT);
# one still connecting or registering is cancelled then.
AGENT_FLUSH_GRACE = 1.0
AGENT_CLOSE_TIMEOUT = WS_CLOSE_TIMEOUT

JobTypeName = Literal["room", "publisher", "participant"]
JOB_TYPES: dict[str, agent_pb.JobType] = {
    "room": agent_pb.JT_ROOM,
    "publisher": agent_pb.JT_PUBLISHER,
    "participant": agent_pb.JT_PARTICIPANT,
}
REQUEST_DECISIONS = ("accepted", "rejected", "full", "draining")  # how a job request was answered
RequestFunction = Callable[[JobRequest], Awaitable[None]]
PrewarmFunction = Callable[[SharedState], Awaitable[None] | None]
LoadFunction = Callable[["AgentServer"], float]


def pool_load(server: AgentServer) -> float:
    """Load from the workers only: for a supervisor that shares its process with something else (the
    in-process dev server of `framepool dev` and the demo), whose CPU would otherwise read as the daemon's."""
    return server.pool.load() if server.pool is not None else 0.0


async def accept_all(request: JobRequest) -> None:
    """The default request function."""
    await request.accept()


@dataclass
class Agent:
    """One registered agent: what it registers as and the user functions it runs."""

    entrypoint: Entrypoint
    agent_name: str = ""
    job_type: JobTypeName = "room"
    on_request: RequestFunction = accept_all
    prewarm: PrewarmFunction | None = None
    permissions: models.ParticipantPermission = field(default_factory=default_permissions)
    # Processors the agent is known to attach (declarative agents): tried in a worker at start.
    processors: list[ProcessorSpec] = field(default_factory=list, kw_only=True)
    # Bridge sinks its data flows send to (declarative agents): each must be configured, checked at start.
    sinks: set[str] = field(default_factory=set, kw_only=True)
    shared: SharedState = field(init=False)

    def __post_init__(self) -> None:
        if self.job_type not in JOB_TYPES:
            raise ConfigError(f"bad job type {self.job_type!r}: expected room, publisher or participant")
        self.shared = SharedState(self.agent_name)


class AgentServer:
    """Register agents with `@server.rtc_session(...)`, then `await server.run()`."""

    def __init__(
        self, settings: Settings | None = None, *, load_fnc: LoadFunction | None = None, version: str = ""
    ) -> None:
        self.settings = settings or Settings()
        self.agents: list[Agent] = []
        self.version = version
        self.pool: WorkerPool | None = None
        self.bridges = Bridges(self.settings)  # the sinks' spools and bridge process, started by start()
        self.jobs: dict[str, RunningJob] = {}
        self.connections: list[AgentConnection] = []
        self.registered = asyncio.Event()  # every agent registered at least once
        self.draining = False
        self.drained = asyncio.Event()
        self.load_fnc = load_fnc
        self._cpu = CpuMeter()
        self.load = LoadTracker(self._measure_load, self.settings.load_threshold, self.settings.max_jobs)
        self._stop = asyncio.Event()
        self._job_tasks = TaskSet("agent server jobs", log)
        self._connection_tasks: list[asyncio.Task[None]] = []  # each connection's run(), from serve() on
        self._owners: dict[str, AgentConnection] = {}
        # Observers of finished jobs (metrics, tests): called with the RunningJob after its final status
        # report.
        self.job_ended: list[Callable[[RunningJob], None]] = []
        self.job_requests, self.assignment_timeouts = dict.fromkeys(REQUEST_DECISIONS, 0), 0  # for metrics

    def configure(self, settings: Settings) -> None:
        """Replace the settings (the CLI's flags, environment and TOML win over what the module passed)."""
        if self.pool is not None:
            raise RuntimeError("configure() must come before start()")
        self.settings = settings
        self.bridges = Bridges(settings)
        self.load = LoadTracker(self._measure_load, settings.load_threshold, settings.max_jobs)

    # -- registration -------------------------------------------------------------------------------------

    def rtc_session(
        self,
        *,
        agent_name: str = "",
        type: JobTypeName = "room",
        on_request: RequestFunction | None = None,
        prewarm: PrewarmFunction | None = None,
        permissions: models.ParticipantPermission | None = None,
    ) -> Callable[[Entrypoint], Entrypoint]:
        """Decorator registering `entrypoint(ctx)` as an agent; several per daemon."""

        def register(entrypoint: Entrypoint) -> Entrypoint:
            agent = Agent(entrypoint, agent_name, type, on_request or accept_all, prewarm)
            if permissions is not None:
                agent.permissions = permissions
            self.add_agent(agent)
            return entrypoint

        return register

    def add_agent(self, agent: Agent) -> None:
        for other in self.agents:
            if (other.agent_name, other.job_type) == (agent.agent_name, agent.job_type):
                raise ConfigError(
                    f"agent {agent.agent_name or '(automatic)'} ({agent.job_type}) is registered twice"
                )
        self.agents.append(agent)

    # -- load -----------------------------------------------------------------------------------------------

    def _measure_load(self) -> float:
        if self.load_fnc is not None:
            return self.load_fnc(self)
        pool_load = self.pool.load() if self.pool is not None else 0.0
        return max(self._cpu.sample(), pool_load)

    def worker_status(self) -> DaemonStatus:
        self.load.refresh()
        return DaemonStatus(self.load.full(self.draining), self.load.measured, len(self.jobs), self.draining)

    def _status_changed(self) -> None:
        for connection in self.connections:
            connection.status_changed.set()

    # -- JobHost (called by the connections) ---------------------------------------------------------------

    def _agent_of(self, connection: AgentConnection) -> Agent:
        return self.agents[self.connections.index(connection)]

    async def on_availability(
        self, connection: AgentConnection, request: agent_pb.AvailabilityRequest
    ) -> agent_pb.AvailabilityResponse:
        job = request.job
        agent = self._agent_of(connection)
        refused = agent_pb.AvailabilityResponse(job_id=job.id, available=False)
        if self.draining or not self.load.try_reserve(job.id):
            decision = "draining" if self.draining else "full"
            self.job_requests[decision] += 1
            log.info("job %s declined: %s", job.id, decision)
            return refused
        job_request = JobRequest(job, agent.agent_name)
        try:
            await asyncio.wait_for(agent.on_request(job_request), self.settings.assignment_timeout)
        except TimeoutError:
            log.warning(
                "job %s: the request function did not answer in %.1f s",
                job.id,
                self.settings.assignment_timeout,
            )
        except Exception:
            log.exception("job %s: the request function raised", job.id)
        answer = job_request.answer
        self.job_requests["accepted" if answer is not None and answer.available else "rejected"] += 1
        if answer is None or not answer.available:
            self.load.release(job.id)
            return agent_pb.AvailabilityResponse(
                job_id=job.id, available=False, terminate=bool(answer and answer.terminate)
            )
        self._status_changed()
        return agent_pb.AvailabilityResponse(
            job_id=job.id,
            available=True,
            participant_name=answer.name,
            participant_identity=answer.identity or f"agent-{job.id}",
            participant_metadata=answer.metadata,
            participant_attributes=answer.attributes,
        )

    def on_assignment_timeout(self, connection: AgentConnection, job_id: str) -> None:
        self.assignment_timeouts += 1
        self.load.release(job_id)
        self._status_changed()

    async def on_assignment(self, connection: AgentConnection, assignment: agent_pb.JobAssignment) -> None:
        url = assignment.url or ws_url(self.settings.livekit_url)

        async def report(status: agent_pb.JobStatus, error: str) -> None:
            await connection.update_job(assignment.job.id, status, error)

        self._owners[assignment.job.id] = connection
        self.launch(self._agent_of(connection), assignment.job, url, assignment.token, report)

    def on_termination(self, connection: AgentConnection, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            log.info("termination for job %s, which is not running here", job_id)
            return
        job.terminate("terminated by the server")

    def live_jobs(self, connection: AgentConnection) -> list[agent_pb.Job]:
        return [job.ctx.job for job_id, job in self.jobs.items() if self._owners.get(job_id) is connection]

    # -- jobs -----------------------------------------------------------------------------------------------

    def launch(
        self, agent: Agent, job: agent_pb.Job, url: str, token: str, report: StatusReporter
    ) -> RunningJob:
        """Run a job (from an assignment, or `connect`): its entrypoint, lifecycle and status reports."""
        if self.pool is None:
            raise RuntimeError("the agent server is not running")
        ctx = JobContext(
            job,
            url,
            token,
            self.pool,
            agent.shared,
            self.settings.single_peer_connection,
            self.bridges.spools,
        )
        running = RunningJob(ctx, agent.entrypoint, report, self.settings.shutdown_timeout)
        self.jobs[job.id] = running
        self.load.started(job.id)
        with log_context(**ctx.log_context_fields):
            task = self._job_tasks.spawn(running.run(), name=f"job {job.id}")
        task.add_done_callback(lambda _: self._job_finished(job.id))
        self._status_changed()
        return running

    def _job_finished(self, job_id: str) -> None:
        """Bookkeeping once a job's task ended (a failure outside its entrypoint is logged by TaskSet)."""
        running = self.jobs.pop(job_id, None)
        self._owners.pop(job_id, None)
        self.load.ended(job_id)
        if self.draining and not self.jobs:
            self.drained.set()
        self._status_changed()
        for observer in self.job_ended:
            if running is not None:
                observer(running)

    # -- lifetime -------------------------------------------------------------------------------------------

    def check(self) -> None:
        """ConfigError unless there are agents and LiveKit credentials (before anything starts)."""
        if not self.agents:
            raise ConfigError(
                "no agents to run: register one with @server.rtc_session or add [[agents]] to the config"
            )
        missing = [
            name
            for name, value in (
                ("LIVEKIT_URL", self.settings.livekit_url),
                ("LIVEKIT_API_KEY", self.settings.api_key),
                ("LIVEKIT_API_SECRET", self.settings.api_secret),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"missing LiveKit credentials: set {', '.join(missing)} (or livekit_url/api_key/api_secret "
                "in the config)"
            )
        if not self.settings.livekit_url.startswith(("ws://", "wss://", "http://", "https://")):
            raise ConfigError(
                f"bad setting livekit_url = {self.settings.livekit_url!r}: expected a ws:// or wss:// URL"
            )
        check_sinks(self.settings.sinks, self.agents)

    async def start(self, pool: WorkerPool | None = None, *, register: bool = True) -> None:
        """Start the pool (unless given one), prewarm each agent and create its connection (unless
        `register=False`).

        A prewarm that fails or overruns `prewarm_timeout` raises FramepoolError naming the agent, after
        stopping a pool started here: nothing registers with LiveKit before every agent is ready.
        """
        self.check()
        own_pool = pool is None
        if pool is None:
            pool = WorkerPool(self.settings)
            await pool.start()
        self.pool = pool
        try:
            for agent in self.agents:
                await self._prewarm(agent)
            await self._probe_processors(pool)
            await self.bridges.start()
        except BaseException:
            self.pool = None
            await self.bridges.aclose()
            if own_pool:
                await pool.aclose()
            raise
        if register:
            self._create_connections()

    async def _probe_processors(self, pool: WorkerPool) -> None:
        """ProcessorError (exit 2) if a processor an agent declares cannot be constructed in a worker."""
        specs = [spec for agent in self.agents for spec in agent.processors]
        failures = await pool.probe(specs) if specs else {}
        if failures:
            text, reason = next(iter(failures.items()))
            raise ProcessorError(f"processor {text} failed to start: {reason}")

    async def _prewarm(self, agent: Agent) -> None:
        """Run the agent's prewarm hook once, here in the supervisor, before any of its jobs can arrive.

        A coroutine hook is bounded by `prewarm_timeout`; a plain function runs to completion on the loop
        (it cannot be interrupted, so it should only do quick set-up or hand heavy work to the workers).
        """
        if agent.prewarm is None:
            return
        label = agent.agent_name or "(automatic)"
        timeout = self.settings.prewarm_timeout
        started = time.monotonic()
        try:
            result = agent.prewarm(agent.shared)
            if inspect.isawaitable(result):
                await asyncio.wait_for(result, timeout)
        except TimeoutError:
            raise FramepoolError(
                f"agent {label}: prewarm did not finish within {timeout:g} s (prewarm_timeout)"
            ) from None
        except Exception as exc:
            # The operator gets one line; whoever debugs the hook finds the traceback at log level debug.
            log.debug("agent %s: prewarm failed", label, exc_info=True)
            raise FramepoolError(f"agent {label}: prewarm failed: {type(exc).__name__}: {exc}") from None
        log.info("agent %s: prewarmed in %.2f s", label, time.monotonic() - started)

    def _create_connections(self) -> None:
        options = ConnectionOptions.from_settings(self.settings, url=ws_url(self.settings.livekit_url))
        for agent in self.agents:
            registration = Registration(
                job_type=JOB_TYPES[agent.job_type],
                agent_name=agent.agent_name,
                permissions=agent.permissions,
                version=self.version,
            )
            self.connections.append(AgentConnection(registration, options, self))

    async def serve(self) -> None:
        """Connect every agent and keep it registered until `stop()`.

        Raises ServerUnavailableError when LiveKit stays unreachable, PoolHaltedError when the pool halts. The
        connections stay open when this returns or raises (a drain still reports through them): `disconnect`
        closes them.
        """
        if self.pool is None:
            raise RuntimeError("start() the agent server before serve()")
        self._connection_tasks = []
        for connection in self.connections:
            # Each connection's lines carry its agent (and the jobs it takes, their own fields too).
            with log_context(agent=connection.registration.agent_name or "(automatic)"):
                task = asyncio.create_task(connection.run(), name=f"connection {connection.label}")
            self._connection_tasks.append(task)
        watch = asyncio.ensure_future(self._watch_registration())
        waits: dict[object, Awaitable[Any]] = dict(enumerate(self._connection_tasks))
        waits.update(halted=self.pool.halted.wait(), stop=self._stop.wait())
        try:
            ended = await first_of(waits)
            for task in self._connection_tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if ended == "halted":
                raise PoolHaltedError(f"worker pool halted: {self.pool.halt_reason}")
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    async def _watch_registration(self) -> None:
        await asyncio.gather(*(d.registered.wait() for d in self.connections))
        log.info(
            "registered %d agent(s): %s", len(self.connections), ", ".join(d.label for d in self.connections)
        )
        self.registered.set()

    def stop(self) -> None:
        """Make `serve` (and `run`) return."""
        self._stop.set()

    def begin_drain(self) -> None:
        """Report FULL on every connection and accept nothing new; `drained` is set once no job runs."""
        self.draining = True
        self._status_changed()
        log.info("draining: %d job(s) running", len(self.jobs))
        if not self.jobs:
            self.drained.set()

    def end_jobs(self, reason: str) -> None:
        """Start every running job's shutdown ladder (each bounded by shutdown_timeout); accept no new job."""
        self.draining = True
        for job in list(self.jobs.values()):
            job.terminate(reason)

    async def jobs_ended(self) -> None:
        """Until every job running now has finished: its shutdown ladder and its final status report."""
        await self._job_tasks.wait()

    async def disconnect(self) -> None:
        """Close every agent connection: queued job statuses first, then the websockets (see AGENT_*)."""
        await asyncio.gather(*(d.flush(grace=AGENT_FLUSH_GRACE) for d in self.connections))
        for connection in self.connections:
            connection.stop()
        connections, self._connection_tasks = self._connection_tasks, []
        if connections:
            _, late = await asyncio.wait(connections, timeout=AGENT_CLOSE_TIMEOUT)
            for task in late:
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)
        for connection in self.connections:
            await connection.aclose()

    async def run(self, pool: WorkerPool | None = None) -> None:
        """`start` (unless started), `serve` until `stop()`, then `aclose`: an AgentServer embedded in a
        program of one's own (no signals, no drain); errors as `serve` raises them."""
        if self.pool is None:
            await self.start(pool)
        try:
            await self.serve()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """End every job, close the connections, then the pool (after `start`, with or without `serve`)."""
        self.end_jobs("daemon shutting down")
        grace = self.settings.shutdown_timeout + REPORT_GRACE
        if await first_of({"ended": self._job_tasks.wait()}, within=grace) is None:
            late = len(self._job_tasks)
            log.error("%d job(s) did not finish their shutdown; closing the pool under them", late)
        await self.disconnect()
        await self.bridges.aclose()  # after every job: nothing appends to the spools any more
        if self.pool is not None:
            await self.pool.aclose()
        log.info("agent server stopped")


def check_sinks(specs: list[SinkSpec], agents: list[Agent]) -> None:
    """ConfigError unless every sink's options are valid and every sink a data flow names is configured."""
    sink_registry.check(specs)
    configured = {spec.name for spec in specs}
    for agent in agents:
        unknown = sorted(agent.sinks - configured)
        if unknown:
            known = ", ".join(sorted(configured)) or "none"
            raise ConfigError(
                f"agent {agent.agent_name or '(automatic)'}: its data flow sends to sink {unknown[0]!r}, "
                f"which is not configured ([[sinks]] names: {known})"
            )
