"""Nothing outlives the supervisor: its workers, the forkserver and multiprocessing's resource tracker are
gone within `ORPHANS_GONE` of its death, a worker stuck in a processor included (process tier)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import psutil
import pytest

from tests.support.pool import wait_exited
from tests.support.timeouts import ORPHANS_GONE, PROCESS

pytestmark = pytest.mark.process


def descendants(pid: int) -> dict[int, str]:
    """Every descendant of `pid` and its command line, read from /proc."""
    found = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            found[child.pid] = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
    return found


def gone_within(pids: list[int], deadline: float) -> list[int]:
    """The pids still running at `deadline` (monotonic), waited for on their pidfds: an exited process is
    gone even before init reaps it (a zombie keeps its /proc entry, not its memory or its fds)."""
    return wait_exited(pids, max(0.0, deadline - time.monotonic()))


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
async def test_kill_9_of_a_supervisor_with_a_busy_processor_leaves_nothing(
    shm_unchanged: None, start_method: str
) -> None:
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.busy_supervisor_script", start_method,
        stdout=asyncio.subprocess.PIPE, cwd=os.getcwd(),
    )  # fmt: skip
    try:
        assert supervisor.stdout is not None
        line = await asyncio.wait_for(supervisor.stdout.readline(), PROCESS)
        workers = json.loads(line)["workers"]
        family = descendants(supervisor.pid)
    finally:
        supervisor.kill()
        killed = time.monotonic()
        await supervisor.wait()
    assert supervisor.returncode == -signal.SIGKILL
    assert set(workers) <= set(family)
    assert any("resource_tracker" in cmd for cmd in family.values())
    if start_method == "forkserver":
        assert any("forkserver" in cmd and pid not in workers for pid, cmd in family.items())
    alive = await asyncio.to_thread(gone_within, list(family), killed + ORPHANS_GONE)
    assert alive == [], {pid: family[pid] for pid in alive}
