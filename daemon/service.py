"""The Supervisor: the daemon from start to exit, on one screen (supervisor process).

`Supervisor.run` is what gunicorn's `Arbiter.run` and uvicorn's `Server.serve` are: startup, main loop,
shutdown, read top to bottom. The Supervisor owns everything the daemon's top level needs: the worker
pool, the agent server and its connections (`framepool.agent.server.AgentServer`), the stop signals
(`framepool.signals`), the loop-lag monitor, the systemd notifier and its reports (watchdog, status:
`framepool.sdreports`) and the stop ladder. Its `health` is a property anyone can read; `http`
(framepool.ops) serves /livez, /readyz, /status, /metrics and /dashboard from the start of start-up until
after the stop ladder.

The stop ladder, each rung bounded by its own budget on the Supervisor's clock and logged once when taken:
1. drain (first SIGTERM/SIGINT; `drain_timeout`): every connection reports FULL, nothing new is accepted,
   running jobs may finish on their own; a second signal cuts it short (the quick path);
2. end jobs (`shutdown_timeout` + REPORT_GRACE): every job runs its own shutdown ladder and reports;
3. disconnect agents (AGENT_FLUSH_GRACE + AGENT_CLOSE_TIMEOUT, every agent at once);
4. stop bridges (with sinks: `bridge_stop_timeout` + margins): close the spools, then the bridge process
   delivers what they hold and exits (SIGKILL past its deadline);
5. stop workers (`framepool.pool.close_budget`): detach streams, then each worker's Shutdown →
   ShutdownAck → exit → SIGKILL.
A rung still running at its budget is cut (cancelled) and the next one taken, so the sum, `stop_budget`,
is a bound and not an estimate: systemd's TimeoutStopSec and Docker's stop grace are checked against it.
A signal during start-up (a prewarm hook may take `prewarm_timeout`) abandons it and goes to the ladder.
`framepool connect` runs the same object for one job without registering: a signal ends that job at once
(no drain), and the exit status is the job's.

Exit status (`ExitStatus`): 0 after a clean drain (or a job that succeeded), 1 when jobs had to be cut
short (or the job failed), 130 on the quick path; a failure (LiveKit unreachable, the pool halted) is
raised as its FramepoolError after the ladder, and the CLI exits with its code.

The clock is injected (trio's habit), so the ladder's rungs and deadlines are tested without real time.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import msgspec
from livekit.protocol import agent as agent_pb

from framepool.agent.dataplane import bridges_budget
from framepool.agent.server import AGENT_CLOSE_TIMEOUT, AGENT_FLUSH_GRACE, REPORT_GRACE, Agent, AgentServer
from framepool.errors import ExitStatus
from framepool.loop import Clock, LoopClock, LoopLagMonitor
from framepool.ops.http import HttpServer
from framepool.pool import WorkerPool, close_budget
from framepool.sdnotify import Notifier
from framepool.sdreports import SystemdReports, service_state, watchdog_period
from framepool.settings import Settings
from framepool.signals import StopSignals
from framepool.tasks import TaskSet, first_of

log = logging.getLogger("framepool.service")

T = TypeVar("T")


class StopBudget(NamedTuple):
    """The longest each rung of the stop ladder may take, in seconds."""

    drain: float
    end_jobs: float
    disconnect: float
    stop_workers: float
    stop_bridges: float = 0.0  # with sinks configured: the bridge delivers what is spooled, then exits

    @property
    def total(self) -> float:
        """What an outer killer (TimeoutStopSec, Docker's stop grace) must exceed."""
        return sum(self)

    def describe(self) -> str:
        rungs = [(name, value) for name, value in self._asdict().items() if value or name != "stop_bridges"]
        parts = " + ".join(f"{name.replace('_', ' ')} {value:g}" for name, value in rungs)
        return f"{self.total:g} s ({parts})"


def stop_budget(settings: Settings) -> StopBudget:
    """Every rung the daemon can take after SIGTERM, with the bound the code enforces on each."""
    return StopBudget(
        drain=settings.drain_timeout,
        end_jobs=settings.shutdown_timeout + REPORT_GRACE,
        disconnect=AGENT_FLUSH_GRACE + AGENT_CLOSE_TIMEOUT,
        stop_workers=close_budget(settings),
        stop_bridges=bridges_budget(settings),
    )


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """The daemon's state as a status endpoint reports it."""

    phase: Phase
    registered: bool  # every agent registered with LiveKit now (not while connecting or reconnecting)
    pool_halted: bool
    loop_lag: float  # seconds, the worst of the last few seconds
    jobs: int

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY and self.registered and not self.pool_halted


class Unfinished(enum.Enum):
    """How a rung of the ladder ended without a result."""

    CUT = "cut"  # its budget ran out: cancelled
    FAILED = "failed"  # it raised (logged)


class StopLadder:
    """Named rungs taken in order, each bounded by its budget on `clock` and logged once when taken."""

    def __init__(self, clock: Clock, on_rung: Callable[[str], object] = lambda name: None) -> None:
        self.clock = clock
        self.taken: list[str] = []
        self._on_rung = on_rung

    async def rung(self, name: str, budget: float, action: Callable[[], Awaitable[T]]) -> T | Unfinished:
        """Run `action` until it ends or `budget` seconds pass on the clock; then it is cancelled (CUT)."""
        self.taken.append(name)
        self._on_rung(name)
        log.info("stop ladder: %s (at most %.1f s)", name, budget)
        task = asyncio.ensure_future(action())
        deadline = asyncio.ensure_future(self.clock.sleep_until(self.clock.now() + budget))
        try:
            await asyncio.wait({task, deadline}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deadline.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            log.warning("stop ladder: %s did not finish within %.1f s; cut short", name, budget)
            return Unfinished.CUT
        if task.exception() is not None:
            log.error("stop ladder: %s failed", name, exc_info=task.exception())
            return Unfinished.FAILED
        return task.result()


class Ending(enum.Enum):
    """Why the main loop ended."""

    SIGNAL = "signal"
    SERVED = "served"  # `AgentServer.serve` returned (someone called stop()) or raised
    JOB_ENDED = "job ended"  # connect: the one job is over


@dataclass(frozen=True)
class LocalJob:
    """`framepool connect`: one job, run now in a named room, without registering for dispatch."""

    agent: Agent
    job: agent_pb.Job
    url: str
    token: str


class Supervisor:
    """See the module docstring. `await Supervisor(server).run()` is the daemon."""

    def __init__(
        self,
        server: AgentServer,
        *,
        local_job: LocalJob | None = None,
        signals: StopSignals | None = None,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """`signals`: a caller's own, installed and restored by it; by default the Supervisor installs its own
        and never restores them (a command's process, where late signals must stay absorbed)."""
        self.server = server
        self.settings = server.settings
        self.local_job = local_job
        self.signals = signals or StopSignals()
        self._install_signals = signals is None
        self.notifier = notifier or Notifier()
        self.loop_lag = LoopLagMonitor()
        self.reports = SystemdReports(self.notifier, lambda: service_state(self), watchdog_period())
        self.ladder = StopLadder(clock or LoopClock(), lambda rung: self.reports.update_status())
        self.pool: WorkerPool | None = None
        self.phase = Phase.STARTING
        self.job_status: tuple[agent_pb.JobStatus, str] = (agent_pb.JS_PENDING, "")  # the local job's
        self.quick = False  # a second signal cut the drain short
        self._serving: asyncio.Future[None] | None = None  # AgentServer.serve(), from the main loop on
        self._tasks = TaskSet("supervisor", log)
        self.http = HttpServer(self)  # /livez, /readyz, /status (framepool.ops): the daemon's, not connect's

    @property
    def health(self) -> Health:
        connections = self.server.connections
        return Health(
            phase=self.phase,
            registered=bool(connections) and all(d.registered.is_set() for d in connections),
            pool_halted=self.pool is not None and self.pool.halted.is_set(),
            loop_lag=self.loop_lag.lag,
            jobs=len(self.server.jobs),
        )

    async def run(self) -> ExitStatus:
        """The daemon: startup, main loop, stop ladder. Raises FramepoolError for what the CLI reports."""
        if self._install_signals:
            self.signals.install()
        self.loop_lag.start()
        self._tasks.spawn(self.reports.run(), name="systemd reports")  # watchdog, STATUS=, stop extensions
        try:
            started = await self.startup()  # STARTING: workers, prewarm hooks; a stop signal abandons it
            ending = await self.main_loop() if started else Ending.SIGNAL  # READY until a signal, a failure
            return await self.shutdown(ending)  # DRAINING, STOPPING: the stop ladder
        finally:
            self.phase = Phase.STOPPED
            self.loop_lag.stop()
            if self._serving is not None and not self._serving.done():
                self._serving.cancel()  # only when the ladder itself failed: serve() ends with stop()
            await self._tasks.aclose()
            await self.http.aclose()  # last: probes see the whole stop

    # -- phases ---------------------------------------------------------------------------------------------

    async def startup(self) -> bool:
        """Start the workers, run the agents' prewarm hooks, then register (or launch the local job).

        False when a stop signal came first: start-up is abandoned and the ladder stops what it started, so
        a SIGTERM during a long prewarm costs no more than the stop budget.
        """
        self.server.check()  # before any worker starts: a bad configuration is one line, nothing else
        if self.local_job is None:
            await self.http.start()  # before the workers: probes answer (503) during a long start-up
        self.pool = WorkerPool(self.settings)
        starting = asyncio.ensure_future(self._start(self.pool))
        if await first_of({True: starting, False: self.signals.first.wait()}):
            starting.result()  # raises a start-up failure
            return True
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        log.info("stop requested during start-up: start-up abandoned")
        return False

    async def _start(self, pool: WorkerPool) -> None:
        try:
            await pool.start()
            await self.server.start(pool, register=self.local_job is None)
        except Exception:  # a failure, not a stop signal: nothing else will stop the workers
            await pool.aclose()
            raise
        if self.local_job is not None:
            job = self.local_job
            self.server.launch(job.agent, job.job, job.url, job.token, self._job_reported)
        else:
            self._tasks.spawn(self._notify_ready(), name="notify ready")

    async def main_loop(self) -> Ending:
        """READY: serve until a stop signal, the server's end (stop() or a failure) or the local job's end."""
        self.phase = Phase.READY
        waits: dict[Ending, Awaitable[Any]] = {Ending.SIGNAL: self.signals.first.wait()}
        if self.local_job is None:
            self._serving = asyncio.ensure_future(self.server.serve())
            waits[Ending.SERVED] = self._serving
        else:
            waits[Ending.JOB_ENDED] = self.server.jobs_ended()
        return await first_of(waits)

    async def shutdown(self, ending: Ending) -> ExitStatus:
        """The stop ladder (module docstring); the exit status, or the server's failure raised."""
        budget = stop_budget(self.settings)
        serving = self._serving
        drained: bool | None = None  # None: nothing was drained (a failure, stop(), connect, start-up)
        if ending is Ending.SIGNAL and serving is not None:
            drained = await self._drain(budget, serving)
        self.phase = Phase.STOPPING
        self.reports.stopping(budget.total)
        self.server.stop()
        reason = "interrupted" if self.local_job is not None else "daemon shutting down"
        await self.ladder.rung("end jobs", budget.end_jobs, lambda: self._end_jobs(reason))
        await self.ladder.rung("disconnect agents", budget.disconnect, self.server.disconnect)
        if budget.stop_bridges:  # after every job: nothing appends to the spools any more
            await self.ladder.rung("stop bridges", budget.stop_bridges, self.server.bridges.aclose)
        if self.pool is not None:
            await self.ladder.rung("stop workers", budget.stop_workers, self.pool.aclose)
        log.info("agent server stopped")
        if serving is not None and serving.done() and not serving.cancelled() and serving.exception():
            raise serving.exception()  # type: ignore[misc]
        return self._exit_status(drained)

    # -- rungs and reports ----------------------------------------------------------------------------------

    async def _drain(self, budget: StopBudget, serving: asyncio.Future[None]) -> bool:
        """DRAINING: FULL, nothing new, running jobs may finish; False if cut short (timeout, 2nd signal)."""
        self.phase = Phase.DRAINING
        log.info(
            "shutdown requested: draining (a second signal stops at once); stop budget %s", budget.describe()
        )
        self.reports.stopping(budget.total)
        self.server.begin_drain()
        waits: dict[str, Awaitable[Any]] = {
            "drained": self.server.drained.wait(),
            "second signal": self.signals.second.wait(),
            "server ended": serving,
        }
        outcome = await self.ladder.rung("drain", budget.drain, lambda: first_of(waits))
        if outcome == "drained":
            log.info("drain ended: every job finished")
        elif outcome is Unfinished.CUT:
            log.warning("drain timed out with %d job(s) still running", len(self.server.jobs))
        elif outcome == "second signal":
            self.quick = True
            log.warning("second signal: ending %d job(s) now", len(self.server.jobs))
        return outcome == "drained"

    async def _end_jobs(self, reason: str) -> None:
        self.server.end_jobs(reason)
        await self.server.jobs_ended()

    def _exit_status(self, drained: bool | None) -> ExitStatus:
        if self.local_job is not None:
            if self.job_status[0] == agent_pb.JS_PENDING:  # stopped before the job started
                return ExitStatus.INTERRUPTED
            return ExitStatus.OK if self.job_status[0] == agent_pb.JS_SUCCESS else ExitStatus.FAILURE
        if self.quick:
            return ExitStatus.INTERRUPTED
        return ExitStatus.FAILURE if drained is False else ExitStatus.OK

    async def _notify_ready(self) -> None:
        """systemd (Type=notify) counts the daemon as started once workers are up and agents registered."""
        await self.server.registered.wait()
        self.notifier.ready(f"{len(self.server.connections)} agent(s) registered")

    async def _job_reported(self, status: agent_pb.JobStatus, error: str) -> None:
        self.job_status = (status, error)
