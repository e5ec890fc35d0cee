"""The shutdown ladder of one worker: Shutdown → ShutdownAck → exit → SIGKILL (supervisor process).

Each rung has its own deadline (`grace`, worker_shutdown_timeout) on the loop's monotonic clock and logs one
line when taken. Every rung ends with the process reaped (`exited`), so when `climb` returns the pid is gone,
unless even SIGKILL did not end it within `grace`, which is logged as an error.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from framepool.ipc import control
from framepool.ipc.lifecycle import describe_exit
from framepool.tasks import first_of

if TYPE_CHECKING:
    from framepool.pool.process import WorkerProcess

log = logging.getLogger("framepool.pool")


async def climb(worker: WorkerProcess, grace: float) -> None:
    """Stop `worker` (already marked stopping by WorkerProcess.stop)."""
    who = f"worker {worker.slot} (pid {worker.pid})"
    log.info("%s: shutdown requested", who)
    worker.send(control.Shutdown())
    await first_of({"acked": worker.acked.wait(), "exited": worker.exited.wait()}, within=grace)
    if worker.acked.is_set():
        log.info("%s: shutdown acknowledged", who)
        if await first_of({"exited": worker.exited.wait()}, within=grace):
            log.info("%s: exited with %s", who, describe_exit(worker.exitcode))
            return
        log.warning("%s: acknowledged shutdown but did not exit within %.1f s; killing it", who, grace)
    elif worker.exited.is_set():
        log.warning("%s: exited with %s before acknowledging shutdown", who, describe_exit(worker.exitcode))
        return
    else:
        log.warning("%s: did not acknowledge shutdown within %.1f s; killing it", who, grace)
    worker.kill()
    if await first_of({"exited": worker.exited.wait()}, within=grace):
        log.info("%s: killed (%s)", who, describe_exit(worker.exitcode))
    else:
        log.error("%s: still not reaped %.1f s after SIGKILL; giving up on it", who, grace)
