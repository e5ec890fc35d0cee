"""`WorkerProcess.check_health(now)`: the per-worker health policy, at times the test chooses.

A worker handle with its real rings and doorbells, but no process: the policy reads only the last pong,
the measured PSS and the settings, so it is exercised here without waiting for real time to pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from framepool.pool.liveness import HealthAction
from framepool.pool.process import WorkerProcess, WorkerState
from framepool.settings import Settings

MIB = 1 << 20


@pytest.fixture
async def worker() -> AsyncIterator[WorkerProcess]:
    settings = Settings(
        ping_timeout=5.0, worker_memory_warn_mb=50, worker_memory_limit_mb=100, result_ring_slots=2
    )
    handle = WorkerProcess(0, None, settings, lambda _: None)
    handle.state = WorkerState.READY
    handle.last_pong = 100.0
    try:
        yield handle
    finally:
        handle.close()


async def test_nothing_to_check_unless_serving(worker: WorkerProcess) -> None:
    for state in (WorkerState.STARTING, WorkerState.STOPPING, WorkerState.EXITED):
        worker.state = state
        assert worker.check_health(1000.0) is HealthAction.NONE


async def test_a_silent_worker_has_its_stack_dumped_then_is_killed(worker: WorkerProcess) -> None:
    assert worker.check_health(105.0) is HealthAction.PING  # exactly ping_timeout: not yet
    assert worker.check_health(105.1) is HealthAction.DUMP_STACK
    assert worker.check_health(106.1) is HealthAction.KILL_HUNG  # the next heartbeat, still silent


async def test_a_slow_worker_that_answers_after_the_dump_is_spared(worker: WorkerProcess) -> None:
    assert worker.check_health(105.1) is HealthAction.DUMP_STACK
    worker.last_pong = 105.5  # its pong arrived between two heartbeats
    assert worker.check_health(106.1) is HealthAction.PING
    assert worker.check_health(110.6) is HealthAction.DUMP_STACK  # a new silence starts over


async def test_memory_limit_kills_and_the_warning_comes_once_per_crossing(worker: WorkerProcess) -> None:
    now = 101.0
    worker.pss = 60 * MIB
    assert worker.check_health(now) is HealthAction.WARN_MEMORY
    assert worker.check_health(now) is HealthAction.PING  # hovering above the line is quiet
    worker.pss = 46 * MIB
    assert worker.check_health(now) is HealthAction.PING  # within 90 % of the line: not re-armed
    worker.pss = 60 * MIB
    assert worker.check_health(now) is HealthAction.PING
    worker.pss = 40 * MIB
    assert worker.check_health(now) is HealthAction.PING  # well below: re-armed
    worker.pss = 60 * MIB
    assert worker.check_health(now) is HealthAction.WARN_MEMORY
    worker.pss = 101 * MIB
    assert worker.check_health(now) is HealthAction.KILL_MEMORY
