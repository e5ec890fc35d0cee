"""The spool across a writer killed with SIGKILL: everything it appended is read back, in order, and a new
writer carries on after it (real processes, real files)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from framepool.ipc.spool import SpoolReader, SpoolWriter
from framepool.processors.messages import DataMessage, new_event_id
from tests.support.daemon import ROOT
from tests.support.timeouts import EVENT, PROCESS

pytestmark = pytest.mark.process


async def test_a_writer_killed_mid_run_loses_nothing_it_appended(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.spool_writer_script", str(tmp_path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    reported = 0
    async with asyncio.timeout(PROCESS):
        while reported < 3000:  # a few segments' worth, then SIGKILL in the middle of appending
            reported = int(await process.stdout.readline())
    process.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(process.wait(), EVENT) == -signal.SIGKILL
    reader = SpoolReader(tmp_path)
    seqs = []
    while batch := reader.read(1000):
        seqs.extend(record.message.seq for record in batch)
    assert seqs == list(range(1, len(seqs) + 1))  # in order, no gap, nothing invented
    assert len(seqs) >= reported  # everything the writer reported appended (and perhaps a few more)
    reader.commit(reader.position)

    spool = SpoolWriter(tmp_path, max_bytes=1 << 30)  # the restarted supervisor's writer
    after = DataMessage(
        event_id=new_event_id(), seq=1, job="J2", room="room-0", kind="text", topic="t", sender="s",
        sender_kind="standard", received_us=0,
    )  # fmt: skip
    assert spool.append(after)
    spool.close()
    assert [record.message for record in SpoolReader(tmp_path).read()] == [after]
