"""Processors the supervisor never constructs, and the per-worker resource they share (real workers)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from framepool.errors import ProcessorError
from framepool.ipc.slots import AudioShape
from framepool.pool import StreamAttachment, StreamSpec, WorkerPool
from framepool.processors.registry import parse_spec
from tests.support import procs
from tests.support.pool import RecordingSink, settings

pytestmark = pytest.mark.process

SAMPLES = 960  # ModelUser declares 20 ms frames at 48 kHz


@pytest.fixture
def marker() -> Iterator[str]:
    """The file the workers' release_model appends to (named after this process), removed afterwards."""
    path = procs.release_marker(os.getpid())
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    yield path
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def model_report(pool: WorkerPool, stream_id: str) -> tuple[StreamAttachment, dict[str, Any]]:
    """Attach a ModelUser stream, feed it one frame, return the stream and what the processor reported."""
    sink = RecordingSink()
    spec = StreamSpec(
        stream_id=stream_id,
        kind="audio",
        processors=[parse_spec("tests.support.procs:ModelUser")],
        realtime=False,
        max_frame_bytes=SAMPLES * 2,
    )
    stream = await pool.attach(spec, sink)
    await stream.push_wait(np.zeros(SAMPLES, np.int16), 1, AudioShape(48000, 1, SAMPLES))
    await stream.drain()
    [report] = sink.payloads("model")
    return stream, report


def released(marker: str) -> str | None:
    """What release_model recorded: a line "<pid loaded in> <pid released in>" per release."""
    path = Path(marker)
    return path.read_text() if path.exists() else None


@pytest.mark.parametrize(
    "prewarm", ["", "tests.support.procs:prewarm_model"], ids=["on-attach", "at-prewarm"]
)
async def test_streams_on_one_worker_share_one_model_loaded_and_released_in_the_worker(
    shm_unchanged: None, marker: str, prewarm: str
) -> None:
    pool = WorkerPool(settings(prewarm=prewarm))
    try:
        await pool.start()
        [worker_pid] = pool.worker_pids()
        first, one = await model_report(pool, "one")
        second, two = await model_report(pool, "two")
        assert one["id"] == two["id"]  # the same object serves both streams
        for report in (one, two):
            assert report["loads"] == 1  # loaded once in that worker, whichever stream came first
            assert report["loaded_in"] == report["constructed_in"] == report["pid"] == worker_pid
        assert worker_pid != os.getpid()
        # Released at worker exit, not when no stream uses it: a later stream finds it loaded.
        await first.detach()
        await second.detach()
        later, three = await model_report(pool, "three")
        assert (three["id"], three["loads"]) == (one["id"], 1)
        await later.detach()
        assert released(marker) is None  # not while the worker lives
    finally:
        await pool.aclose()
    assert released(marker) == f"{worker_pid} {worker_pid}\n"  # once, in the worker, at its exit
    # The supervisor (this process) imported the processor's module but never constructed or loaded it.
    assert procs.CONSTRUCTED_IN == [] and procs.LOADS == []


async def test_a_model_that_fails_to_load_fails_the_attach_not_the_worker(
    shm_unchanged: None, marker: str
) -> None:
    pool = WorkerPool(settings())
    try:
        await pool.start()
        [worker_pid] = pool.worker_pids()
        spec = StreamSpec(
            stream_id="broken",
            kind="audio",
            processors=[parse_spec("tests.support.procs:BrokenModelUser")],
            max_frame_bytes=SAMPLES * 2,
        )
        with pytest.raises(ProcessorError, match="a processor failed to start: FileNotFoundError: no model"):
            await pool.attach(spec, RecordingSink())
        _, report = await model_report(pool, "fine")
        assert report["pid"] == worker_pid and pool.worker_pids() == [worker_pid]
    finally:
        await pool.aclose()
