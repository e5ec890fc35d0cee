"""Failure paths of the pool that no other test reaches (test process; real workers, real rings): a result
ring that overflows.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from framepool.pool import WorkerPool
from tests.support.pool import AUDIO_10MS, RecordingSink, audio_frame, audio_spec, settings
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.process


async def test_result_ring_overflow_drops_and_counts_every_refused_result(
    shm_unchanged: None, tmp_path: Path
) -> None:
    """A realtime stream's processor emits 100 results while the supervisor's loop is held (so nothing drains
    the 4-slot result ring): the ring takes what fits, every other result is counted as dropped (the worker
    never waits on a realtime stream), the worker carries on, and the stream's figures add up."""
    fifo = tmp_path / "done"
    os.mkfifo(fifo)
    pool = WorkerPool(settings(result_ring_slots=4))
    await pool.start()
    try:
        sink = RecordingSink()
        burst = f'tests.support.procs:Burst(results=100, done_fifo="{fifo}")'
        stream = await pool.attach(audio_spec("r", burst + ";tests.support.procs:Count", realtime=True), sink)
        assert stream.push(audio_frame(1), 1, AUDIO_10MS)
        # Held on purpose: the loop blocks until the worker has emitted everything (the FIFO's open returns
        # when the worker opens its end), so no drain can run in between.
        with fifo.open("rb") as done:
            assert done.read() == b"!"
        assert stream.push(audio_frame(2), 2, AUDIO_10MS)  # the worker still serves the stream
        async with asyncio.timeout(EVENT):
            while stream.stats().processed < 2:
                await pool.next_heartbeat()
        stats = await stream.detach()
        # Every result is either delivered or counted: 100 bursts and one count per frame, then Count's
        # summary at close. While the loop was held, 96 or more bursts met a full ring.
        assert len(sink.results) + stats.results_dropped == 100 + 2 + 1
        assert stats.results_dropped >= 96 and sink.payloads("summary") == [{"frames": 2}]
        assert stats.processed == 2 and stats.errors == 0 and stats.results == len(sink.results)
    finally:
        await pool.aclose()
