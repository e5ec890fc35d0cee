"""The supervisor's reports to systemd (framepool.sdreports) against a real datagram socket: the watchdog
interval as systemd hands it over, pings withheld while the pool is halted or the loop stalls, the status
line, STOPPING=1 and the stop-timeout extensions capped by the stop budget."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest

from framepool.sdnotify import Notifier
from framepool.sdreports import ServiceState, SystemdReports, status_line, watchdog_period
from tests.support.notify_socket import NotifySocket
from tests.support.timeouts import QUIET

BEAT = 0.05
HEALTHY = ServiceState(
    phase="ready", rung="", agents=2, registered=2, jobs=1, workers=3, workers_ready=3, pool_halted=False,
    loop_lag=0.0,
)  # fmt: skip


class States:
    """What the supervisor would report; tests replace `now`."""

    def __init__(self) -> None:
        self.now = HEALTHY

    def __call__(self) -> ServiceState:
        return self.now


@asynccontextmanager
async def reporting(tmp_path: Path, states: States) -> AsyncIterator[tuple[SystemdReports, NotifySocket]]:
    sock = NotifySocket(tmp_path / "notify")
    reports = SystemdReports(Notifier(str(sock.path)), states, watchdog=BEAT)
    task = asyncio.ensure_future(reports.run())
    try:
        yield reports, sock
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


def is_ping(message: dict[str, str]) -> bool:
    return message.get("WATCHDOG") == "1"


@pytest.mark.parametrize(
    ("environ", "period"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # another process's
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_the_watchdog_period_is_half_of_what_systemd_hands_this_process(
    environ: dict[str, str], period: float | None
) -> None:
    assert watchdog_period(environ) == period


def test_the_status_line_names_the_phase_rung_agents_jobs_and_workers() -> None:
    assert status_line(HEALTHY) == "ready: 2/2 agents registered, 1 job, 3/3 workers ready"
    stopping = msgspec.structs.replace(HEALTHY, phase="stopping", rung="end jobs", jobs=0, pool_halted=True)
    assert status_line(stopping) == (
        "stopping (end jobs): 2/2 agents registered, 0 jobs, 3/3 workers ready; worker pool halted"
    )


async def test_pings_stop_while_the_pool_is_halted_or_the_loop_stalls_and_resume(tmp_path: Path) -> None:
    states = States()
    async with reporting(tmp_path, states) as (_, sock):
        await sock.wait_for(is_ping)
        for unhealthy in (
            msgspec.structs.replace(HEALTHY, pool_halted=True),
            msgspec.structs.replace(HEALTHY, loop_lag=BEAT),
        ):
            states.now = unhealthy  # read at the next beat
            withheld_from = len(sock.messages)
            await asyncio.sleep(QUIET / 4)  # forty beats
            assert not sock.times("WATCHDOG", after=withheld_from)
            states.now = HEALTHY
            await sock.wait_for(is_ping, after=withheld_from)


async def test_the_status_is_sent_when_it_changes_and_only_then(tmp_path: Path) -> None:
    states = States()
    async with reporting(tmp_path, states) as (reports, sock):
        await sock.wait_for(lambda m: m.get("STATUS") == status_line(HEALTHY))
        reports.update_status()  # unchanged: nothing sent
        states.now = msgspec.structs.replace(HEALTHY, jobs=2)
        reports.update_status()
        changed = len(sock.messages)
        await sock.wait_for(lambda m: m.get("STATUS") == status_line(states.now))
        statuses = [fields["STATUS"] for _, fields in sock.messages if "STATUS" in fields]
        assert statuses == [status_line(HEALTHY), status_line(states.now)], changed


async def test_stopping_once_then_extensions_capped_by_what_is_left_of_the_budget(tmp_path: Path) -> None:
    states = States()
    async with reporting(tmp_path, states) as (reports, sock):
        states.now = msgspec.structs.replace(HEALTHY, phase="draining")
        reports.stopping(budget=0.1)
        reports.stopping(budget=100.0)  # the ladder past the drain: the first bound stays
        first = await sock.wait_for(lambda m: "STOPPING" in m)
        message = sock.messages[first][1]
        assert message["STATUS"] == status_line(states.now)
        # At most three beats, capped by the 0.1 s left, plus one beat for the report to arrive in.
        assert 0 < int(message["EXTEND_TIMEOUT_USEC"]) <= round((0.1 + BEAT) * 1e6)
        last = first
        while not (late := sock.messages[last][1].get("EXTEND_TIMEOUT_USEC")) or int(late) > BEAT * 1e6:
            last = await sock.wait_for(lambda m: "EXTEND_TIMEOUT_USEC" in m, after=last + 1)
        assert int(late) == round(BEAT * 1e6)  # the budget is spent: one beat at a time until the ladder ends
        assert sum("STOPPING" in fields for _, fields in sock.messages) == 1


async def test_nothing_is_sent_outside_systemd() -> None:
    reports = SystemdReports(Notifier(""), States(), watchdog=BEAT)
    await asyncio.wait_for(reports.run(), QUIET)  # returns at once: no socket to report to
