"""The Supervisor's stop ladder on a clock the test advances (no real time), its budget and its health."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging

import pytest

from framepool.agent.dataplane import SPOOL_CLOSE_GRACE
from framepool.agent.server import AGENT_CLOSE_TIMEOUT, AGENT_FLUSH_GRACE, REPORT_GRACE, AgentServer
from framepool.bridge.registry import SinkSpec
from framepool.bridgehost import KILL_MARGIN
from framepool.pool import close_budget
from framepool.service import Phase, StopLadder, Supervisor, Unfinished, stop_budget
from framepool.settings import Settings
from framepool.signals import StopSignals


class ManualClock:
    """A clock that moves only when the test says so (trio's MockClock without autojump)."""

    def __init__(self) -> None:
        self._now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        self._changed.set()
        await future

    async def next_deadline(self) -> float:
        """The earliest deadline someone sleeps until, once someone does."""
        while True:
            self._sleepers = [s for s in self._sleepers if not s[2].done()]
            heapq.heapify(self._sleepers)
            if self._sleepers:
                return self._sleepers[0][0]
            self._changed.clear()
            await self._changed.wait()

    def advance_to(self, when: float) -> None:
        self._now = when
        while self._sleepers and self._sleepers[0][0] <= when:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


async def settle() -> None:
    """Let every ready callback run (no time passes: the loop only turns)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_rungs_run_in_order_and_return_their_results(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="framepool.service")
    clock = ManualClock()
    seen: list[str] = []
    ladder = StopLadder(clock, seen.append)

    async def answer(value: int) -> int:
        return value

    assert await ladder.rung("first", 5.0, lambda: answer(1)) == 1
    assert await ladder.rung("second", 5.0, lambda: answer(2)) == 2
    assert ladder.taken == seen == ["first", "second"]
    logged = [r.getMessage() for r in caplog.records if r.name == "framepool.service"]
    assert logged == ["stop ladder: first (at most 5.0 s)", "stop ladder: second (at most 5.0 s)"]
    assert clock.now() == 0.0


async def test_a_rung_is_cut_exactly_at_its_budget_and_the_next_one_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    ladder = StopLadder(clock)
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def climb() -> list[object]:
        first = await ladder.rung("stuck", 10.0, hang)
        started = clock.now()
        second = await ladder.rung("quick", 3.0, lambda: asyncio.sleep(0, "quick"))
        return [first, started, second]

    climbing = asyncio.create_task(climb())
    assert await clock.next_deadline() == 10.0
    clock.advance_to(9.999)
    await settle()
    assert not climbing.done() and not cancelled.is_set()
    clock.advance_to(10.0)
    first, started, second = await asyncio.wait_for(climbing, 5.0)  # a bound for failure only: no time passes
    assert first is Unfinished.CUT and cancelled.is_set()
    assert started == 10.0  # the next rung's deadline counts from the cut, on the same clock
    assert second == "quick"
    assert "stop ladder: stuck did not finish within 10.0 s; cut short" in caplog.text


async def test_a_rung_that_raises_is_logged_and_the_ladder_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    ladder = StopLadder(ManualClock())

    async def broken() -> None:
        raise RuntimeError("no pool")

    assert await ladder.rung("broken", 1.0, broken) is Unfinished.FAILED
    assert await ladder.rung("after", 1.0, lambda: asyncio.sleep(0, "done")) == "done"
    assert "stop ladder: broken failed" in caplog.text and "RuntimeError: no pool" in caplog.text


def test_stop_budget_counts_every_rung() -> None:
    settings = Settings(drain_timeout=60, shutdown_timeout=10, worker_shutdown_timeout=3)
    budget = stop_budget(settings)
    assert budget.drain == 60
    assert budget.end_jobs == 10 + REPORT_GRACE  # the job ladder, then the final status report
    assert budget.disconnect == AGENT_FLUSH_GRACE + AGENT_CLOSE_TIMEOUT  # once, not once per agent
    assert budget.stop_workers == close_budget(settings) >= 4 * 3  # detach, ack, exit, reap after SIGKILL
    assert budget.stop_bridges == 0 and "bridges" not in budget.describe()  # no sinks, no bridge
    assert budget.total == sum(budget)
    assert budget.describe().startswith(f"{budget.total:g} s (drain 60 + end jobs 11 + ")
    with_sinks = stop_budget(
        Settings(
            sinks=[SinkSpec(name="s", type="webhook", options={"url": "http://x"})], bridge_stop_timeout=7
        )
    )
    assert with_sinks.stop_bridges == 7 + KILL_MARGIN + SPOOL_CLOSE_GRACE
    assert (
        with_sinks.total == budget.total + with_sinks.stop_bridges and "stop bridges" in with_sinks.describe()
    )


async def test_health_before_start() -> None:
    supervisor = Supervisor(AgentServer(Settings()), signals=StopSignals())
    health = supervisor.health
    assert (health.phase, health.registered, health.pool_halted, health.jobs) == (
        Phase.STARTING,
        False,
        False,
        0,
    )
    assert health.loop_lag == 0.0 and not health.ready
