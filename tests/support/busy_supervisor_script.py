"""A supervisor whose one worker is stuck in a processor, for the tests of what outlives a killed
supervisor: start a pool, push one frame to `tests.support.procs:Hang`, wait until it hangs, print the pids,
wait to be killed.

Run as `python -m tests.support.busy_supervisor_script START_METHOD [idle]` from the repository root; prints
one JSON line. With `idle` the worker is left waiting for frames instead (a baseline).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from framepool.pool import WorkerPool
from tests.support.pool import AUDIO_10MS, RecordingSink, audio_frame, audio_spec, settings


async def main(start_method: str, busy: bool = True) -> None:
    pool = WorkerPool(settings(workers=1, start_method=start_method))
    await pool.start()
    sink = RecordingSink()
    stream = await pool.attach(audio_spec("busy", "tests.support.procs:Hang"), sink)
    if busy:  # else the worker waits idle for frames: the baseline of benchmarks/isolation.py
        await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
        await sink.wait_for(lambda: bool(sink.payloads("hanging")), "the processor to hang")
    print(json.dumps({"supervisor": os.getpid(), "workers": pool.worker_pids()}), flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], busy=sys.argv[2:] != ["idle"]))
