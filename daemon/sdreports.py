"""What the supervisor keeps telling systemd while it runs: watchdog pings, the status line and, once it
stops, extensions of the stop timeout (supervisor process).

Watchdog (`WatchdogSec=` in the unit; systemd passes WATCHDOG_USEC and WATCHDOG_PID): `WATCHDOG=1` every
half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, and only while the daemon can do its job. The
ping is a task on the supervisor's own event loop, so a loop that is blocked sends nothing because it cannot
run; and a loop that runs but stalls for more than a ping period at a time (the lag monitor's worst lag of
the last seconds), or a worker pool that halted (a crash loop), withholds the ping on purpose, so systemd
kills and restarts the daemon (`Restart=on-failure`) instead of keeping a server that accepts no work.
Rejected: a ping from a thread, which keeps pinging while the loop is stuck, the failure the watchdog is
for.

Status (`systemctl status`): one line with the phase, the stop ladder's rung, agents registered, jobs and
workers ready. It summarises several owners' state (connections, jobs, the pool), so rather than an event
from each it is rebuilt once a second and sent when it changed: that also bounds the rate at one datagram a
second however fast jobs come and go. A rung of the stop ladder is sent at once (`update_status`).

Stopping: `STOPPING=1` when the drain starts, then `EXTEND_TIMEOUT_USEC=` at every beat until the ladder
ends. systemd counts an extension only past `TimeoutStopSec`, so with the shipped unit (which exceeds the
stop budget) it changes nothing; it keeps a daemon alive whose operator raised `drain_timeout` without
raising the unit's timeout, for as long as its loop still beats, and never past the ladder's own bound: each
extension asks for at most three beats more, capped at what is left of the stop budget.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import msgspec

from framepool.sdnotify import Notifier

if TYPE_CHECKING:
    from framepool.service import Supervisor

log = logging.getLogger("framepool.systemd")

STATUS_EVERY = 1.0  # seconds between status checks: the most STATUS= datagrams a second is one
STOP_BEAT = 5.0  # seconds between stop-timeout extensions when no watchdog sets the beat
EXTEND_BEATS = 3  # an extension asks for this many beats more (a beat or two may be late on a busy loop)


class ServiceState(msgspec.Struct, frozen=True, kw_only=True):
    """The supervisor as systemd hears about it."""

    phase: str
    rung: str  # the stop ladder's latest rung, "" before the ladder
    agents: int
    registered: int
    jobs: int
    workers: int
    workers_ready: int
    pool_halted: bool
    loop_lag: float  # seconds, the worst of the last few seconds


def service_state(supervisor: Supervisor) -> ServiceState:
    health = supervisor.health
    connections = supervisor.server.connections
    workers = supervisor.pool.stats().workers if supervisor.pool is not None else []
    return ServiceState(
        phase=health.phase.value,
        rung=supervisor.ladder.taken[-1] if supervisor.ladder.taken else "",
        agents=len(connections),
        registered=sum(connection.registered.is_set() for connection in connections),
        jobs=health.jobs,
        workers=len(workers),
        workers_ready=sum(worker.state == "ready" for worker in workers),
        pool_halted=health.pool_halted,
        loop_lag=health.loop_lag,
    )


def status_line(state: ServiceState) -> str:
    """`ready: 2/2 agents registered, 1 job, 2/2 workers ready` (what `systemctl status` shows)."""
    phase = f"{state.phase} ({state.rung})" if state.phase == "stopping" and state.rung else state.phase
    jobs = f"{state.jobs} job" + ("" if state.jobs == 1 else "s")
    line = (
        f"{phase}: {state.registered}/{state.agents} agents registered, {jobs}, "
        f"{state.workers_ready}/{state.workers} workers ready"
    )
    return line + ("; worker pool halted" if state.pool_halted else "")


def watchdog_period(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of WATCHDOG_USEC in seconds when the watchdog is this process's (WATCHDOG_PID unset or ours)."""
    environ = os.environ if environ is None else environ
    try:
        usec = int(environ.get("WATCHDOG_USEC", "0"))
        pid = int(environ.get("WATCHDOG_PID", "0"))
    except ValueError:
        log.warning("ignoring a malformed WATCHDOG_USEC or WATCHDOG_PID from the service manager")
        return None
    if usec <= 0 or (pid and pid != os.getpid()):
        return None
    return usec / 2e6


class SystemdReports:
    """The supervisor's task that pings the watchdog, keeps STATUS= current and extends the stop timeout."""

    def __init__(
        self, notifier: Notifier, state: Callable[[], ServiceState], watchdog: float | None = None
    ) -> None:
        """`watchdog`: the ping period in seconds (`watchdog_period()`), None for no pings."""
        self._notifier = notifier
        self._state = state
        self.watchdog = watchdog
        self.beat = watchdog or STOP_BEAT
        self._stop_deadline: float | None = None  # loop time by which the stop ladder has ended
        self._stopping = asyncio.Event()
        self._sent_status = ""
        self._withheld = ""  # why the last ping was withheld, "" while pinging

    async def run(self) -> None:
        """Until cancelled (the supervisor's tasks close after the stop ladder); nothing outside systemd."""
        if not self._notifier.enabled:
            return
        async with asyncio.TaskGroup() as group:
            group.create_task(self._keep_status())
            group.create_task(self._heartbeat())

    def update_status(self) -> None:
        """Send the status line now if it changed (a rung of the stop ladder: a handful per stop)."""
        line = status_line(self._state())
        if line != self._sent_status:
            self._sent_status = line
            self._notifier.status(line)

    def stopping(self, budget: float) -> None:
        """The stop ladder starts: STOPPING=1, then extensions until `budget` seconds have passed. Once: the
        drain calls it, and the ladder's next rungs again when there was no drain (a failure, start-up)."""
        if self._stop_deadline is not None:
            return
        now = asyncio.get_running_loop().time()
        self._stop_deadline = now + budget
        self._sent_status = status_line(self._state())
        self._notifier.notify(stopping=1, status=self._sent_status, **self._extension(now))
        self._stopping.set()

    async def _keep_status(self) -> None:
        while True:
            self.update_status()
            await asyncio.sleep(STATUS_EVERY)

    async def _heartbeat(self) -> None:
        if self.watchdog is None:
            await self._stopping.wait()  # nothing to beat for until the stop ladder
        while True:
            fields: dict[str, int] = {}
            if self.watchdog is not None and self._may_ping():
                fields["watchdog"] = 1
            if self._stop_deadline is not None:
                fields.update(self._extension(asyncio.get_running_loop().time()))
            if fields:
                self._notifier.notify(**fields)
            await asyncio.sleep(self.beat)

    def _may_ping(self) -> bool:
        """Healthy enough for systemd to keep it: the pool has not halted and the loop is not stalling."""
        state = self._state()
        reason = ""
        if state.pool_halted:
            reason = "the worker pool halted"
        elif state.loop_lag >= self.beat:
            reason = f"the event loop stalled for {state.loop_lag:.1f} s"
        if reason != self._withheld:
            if reason:
                log.warning("systemd watchdog: pings withheld: %s", reason)
            else:
                log.info("systemd watchdog: pings resumed")
            self._withheld = reason
        return not reason

    def _extension(self, now: float) -> dict[str, int]:
        if self._stop_deadline is None:
            return {}
        left = max(0.0, self._stop_deadline - now)
        return {"extend_timeout_usec": round((min(left, EXTEND_BEATS * self.beat) + self.beat) * 1e6)}
