"""A child process that delivers deterministic room traffic through the PostgreSQL sink, batch after batch,
confirming each in a checkpoint file (the child the SIGKILL test in tests/process/test_postgres_sink.py
starts and kills; it plays the bridge process).

    python -m tests.support.postgres_sink_runner DSN TABLE CHECKPOINT TOTAL BATCH

It starts at the first batch the checkpoint does not confirm (what a restarted bridge re-delivers), prints
`open` once the sink is open, `confirmed <n>` after each checkpoint, `done` at the end. A batch the sink
rejects is a failure of what the test checks: exit 3.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from framepool.bridge.postgres_sink import PostgresConfig, PostgresSink
from framepool.bridge.sink import SinkRejected
from tests.support.sink_data import room_traffic


async def run(dsn: str, table: str, checkpoint: Path, start: int, total: int, size: int) -> int:
    events = room_traffic("postgres-kill", total)
    batches = [events[i : i + size] for i in range(0, total, size)]
    sink = PostgresSink("runner", PostgresConfig(dsn=dsn, table=table))
    await sink.open()
    print("open", flush=True)
    for number in range(start, len(batches)):
        try:
            await sink.deliver(batches[number])
        except SinkRejected as exc:
            print(f"rejected {number}: {exc}", flush=True)
            return 3
        confirm(checkpoint, number + 1)
        print(f"confirmed {number}", flush=True)
    await sink.close()
    print("done", flush=True)
    return 0


def confirm(checkpoint: Path, next_batch: int) -> None:
    """Atomically: the old checkpoint or the new one, never a torn one."""
    scratch = checkpoint.with_suffix(".tmp")
    scratch.write_text(str(next_batch))
    os.replace(scratch, checkpoint)


if __name__ == "__main__":
    dsn, table, path, total, size = sys.argv[1:]
    checkpoint = Path(path)
    start = int(checkpoint.read_text()) if checkpoint.exists() else 0
    sys.exit(asyncio.run(run(dsn, table, checkpoint, start, int(total), int(size))))
