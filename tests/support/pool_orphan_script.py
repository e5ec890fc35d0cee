"""A minimal supervisor for the kill -9 test: start a pool, attach a stream, print the pids, wait to be
killed.

Run as `python -m tests.support.pool_orphan_script START_METHOD` from the repository root.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from framepool.pool import WorkerPool
from tests.support.pool import RecordingSink, audio_spec, settings


async def main(start_method: str) -> None:
    pool = WorkerPool(settings(workers=2, start_method=start_method))
    await pool.start()
    await pool.attach(audio_spec("orphan", "tests.support.procs:Count", realtime=True), RecordingSink())
    print(json.dumps({"supervisor": os.getpid(), "workers": pool.worker_pids()}), flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
