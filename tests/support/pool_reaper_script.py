"""A supervisor that is a child subreaper, for the test of a forkserver killed under the pool: its orphaned
workers are re-parented to this process, which must reap them itself (`os.waitid` on their pidfds).

Run as `python -m tests.support.pool_reaper_script` from the repository root; prints one JSON line.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal

import psutil

from framepool.pool import WorkerPool
from tests.support.pool import settings
from tests.support.timeouts import EVENT

PR_SET_CHILD_SUBREAPER = 36


async def main() -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    pool = WorkerPool(settings(workers=2, start_method="forkserver", worker_shutdown_timeout=2.0))
    await pool.start()
    pids = pool.worker_pids()
    server = psutil.Process(pids[0]).ppid()
    os.kill(server, signal.SIGKILL)  # its workers die of their parent-death signal and come to us
    psutil.Process(server).wait(EVENT)  # our child: reaped here, so its workers are orphans before the ladder
    await pool.aclose()
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    codes = [w.exitcode for w in pool.stats().workers]
    print(json.dumps({"workers": pids, "alive": alive, "exitcodes": codes}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
