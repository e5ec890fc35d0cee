"""The supervisor's loop: uvloop by default, and a lag monitor that sees a blocked loop."""

import asyncio
import logging
import time

import pytest

from framepool import loop as framepool_loop
from framepool.loop import LoopLagMonitor


def test_run_uses_uvloop_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert framepool_loop.run(loop_module()).startswith("uvloop")
    monkeypatch.setenv("FRAMEPOOL_LOOP", "asyncio")
    assert framepool_loop.run(loop_module()).startswith("asyncio")


async def test_a_blocked_loop_shows_as_lag_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    monitor = LoopLagMonitor(interval=0.02, warn_above=0.1, warn_every=60.0)
    monitor.start()
    try:
        for _ in range(2):
            time.sleep(0.25)  # noqa: ASYNC251 - the point: a blocking call in a coroutine stalls every other task
            await asyncio.sleep(0.05)  # let the late timer run and re-arm
        assert 0.2 <= monitor.lag < 5.0
        assert monitor.worst >= monitor.lag
    finally:
        monitor.stop()
    warnings = [r for r in caplog.records if r.name == "framepool.loop" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ran" in warnings[0].getMessage() and "late" in warnings[0].getMessage()
