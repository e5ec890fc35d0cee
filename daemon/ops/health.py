"""Liveness and readiness of the daemon, decided from the Supervisor's state (supervisor process).

Live ("can the daemon do its job?", /livez) fails only for what a restart may cure:
- the supervisor's event loop stalled: every room connection and ring hand-off waits behind it;
- the worker pool halted (a crash loop: workers cannot start);
- an agent connection gave up on LiveKit (`max_retry` consecutive failures, or refused credentials).
Draining, reconnecting and starting are not failures of liveness: restarting then would only cut jobs short.

Ready ("send me work", /readyz) also needs every agent registered with LiveKit now, at least one worker
ready and the daemon neither starting, draining nor stopping.

A stalled loop cannot answer at all: a probe sent during the stall waits for it to end (and an orchestrator
counts its timeout as a failure). What a probe answered on the loop can report honestly is the stall that
just ended: the loop-lag monitor's worst lag of its window (the last 5 s), or the pending tick's delay when
the probe runs before the monitor has recorded it. Above `live_max_lag` /livez answers 503 for that window,
so one probe after a long stall sees it even if the stall ended a moment before.

Reasons are one line, with any URL stripped of credentials and query string (nothing secret in a response).
`ReadinessLog` logs each change of readiness once, whoever asks and however often.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from framepool.service import Supervisor

log = logging.getLogger("framepool.ops")

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@")
_QUERY = re.compile(r"(?P<url>[a-z][a-z0-9+.-]*://[^\s?]*)\?\S*")


class Verdict(NamedTuple):
    """A probe's answer: `cause` names the condition (stable, for transitions), `reason` says it in a line."""

    ok: bool
    cause: str = ""
    reason: str = ""


OK = Verdict(True)


def redact(text: str) -> str:
    """`text` with URLs stripped of user info and query strings (where tokens and passwords travel)."""
    return _QUERY.sub(r"\g<url>", _CREDENTIALS.sub(r"\g<scheme>", text))


def loop_lag(supervisor: Supervisor) -> float:
    """Seconds: the worst lag of the monitor's window, or the pending tick's if later."""
    monitor = supervisor.loop_lag
    return max(monitor.lag, monitor.overdue)


def liveness(supervisor: Supervisor) -> Verdict:
    lag, limit = loop_lag(supervisor), supervisor.settings.live_max_lag
    if lag > limit:
        window = supervisor.loop_lag.window
        return Verdict(
            False,
            "loop stalled",
            f"supervisor event loop stalled: {lag * 1000:.0f} ms late in the last {window:g} s "
            f"(live_max_lag = {limit:g} s)",
        )
    pool = supervisor.pool
    if pool is not None and pool.halted.is_set():
        return Verdict(False, "pool halted", redact(f"worker pool halted: {pool.halt_reason}"))
    for connection in supervisor.server.connections:
        if connection.failure:
            return Verdict(
                False, "livekit gave up", redact(f"LiveKit retries exhausted: {connection.failure}")
            )
    return OK


def readiness(supervisor: Supervisor) -> Verdict:
    live = liveness(supervisor)
    if not live.ok:
        return live
    phase, server = supervisor.phase.value, supervisor.server
    if phase == "starting":
        what = "workers" if supervisor.pool is None or server.pool is None else "agents"
        return Verdict(False, "starting", f"starting: {what} not ready yet")
    if phase == "draining":
        return Verdict(False, "draining", f"draining: {len(server.jobs)} job(s) finishing, no new jobs")
    if phase != "ready" or server.draining:
        return Verdict(False, "stopping", "stopping")
    for connection in server.connections:
        state = connection.state
        if state != "registered":
            return Verdict(False, state, f"agent {connection.label}: {state} to LiveKit")
    if not server.connections:
        return Verdict(False, "connecting", "no agent connection to LiveKit")
    assert supervisor.pool is not None  # READY comes after the pool started
    workers = supervisor.pool.stats().workers
    if not any(worker.state == "ready" for worker in workers):
        return Verdict(False, "no worker", f"no worker ready: {len(workers)} starting or restarting")
    return OK


class ReadinessLog:
    """Logs readiness once per change of its cause (not per probe, not for a changed count in a reason)."""

    def __init__(self) -> None:
        self._last: str | None = None

    def observe(self, verdict: Verdict) -> None:
        if verdict.cause == self._last:
            return
        self._last = verdict.cause
        if verdict.ok:
            log.info("readiness: ready")
        else:
            log.info("readiness: not ready: %s", verdict.reason, extra={"cause": verdict.cause})
