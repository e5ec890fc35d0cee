"""How workers end, with real worker processes: the stack of a hung worker reaches the log before its
SIGKILL, the worker exits with its own code whatever a processor does, memory kills are reported apart."""

from __future__ import annotations

import logging
import re

import pytest

from framepool.errors import ProcessorError
from framepool.ipc.lifecycle import WorkerExit, describe_exit
from framepool.pool import WorkerPool
from tests.support.pool import AUDIO_10MS, RecordingSink, audio_frame, audio_spec, settings

pytestmark = pytest.mark.process


async def test_a_hung_worker_dumps_its_stack_to_the_log_before_it_is_killed(
    shm_unchanged: None, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="framepool.pool")
    # spawn: the worker inherits this test's captured stderr (a forkserver keeps the one it started with).
    # A hard limit far away: this is the silent-worker ladder, not the cut-off (see test_quarantine.py).
    pool = WorkerPool(
        settings(start_method="spawn", ping_interval=0.3, ping_timeout=1.0, processor_budget_hard=1000)
    )
    await pool.start()
    try:
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("h", "tests.support.procs:Hang"), sink)
        pid = pool.worker_pids()[0]
        stream.push(audio_frame(1), 1, AUDIO_10MS)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the hung worker's restart")
    finally:
        await pool.aclose()
    assert re.search(r'File ".*tests/support/procs\.py", line \d+ in process', capfd.readouterr().err)
    rungs = [r.getMessage() for r in caplog.records if f"(pid {pid})" in r.getMessage()]
    assert re.fullmatch(rf"worker 0 \(pid {pid}\) silent for .* its stack follows \(SIGUSR1\).*", rungs[0])
    assert re.fullmatch(rf"worker 0 \(pid {pid}\) still silent after .*; killing it", rungs[1])
    restarted = next(detail for event, detail in sink.events if event == "worker_restarted")
    assert "exited with signal 9 (killed: silent for" in restarted


async def test_a_processor_calling_sys_exit_cannot_choose_the_workers_exit_code(shm_unchanged: None) -> None:
    pool = WorkerPool(settings())
    await pool.start()
    try:
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("x", "tests.support.procs:SysExit"), sink)
        stream.push(audio_frame(1), 1, AUDIO_10MS)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the worker's restart")
        assert f"exited with {describe_exit(WorkerExit.RUNTIME_ERROR)}" in sink.events[-1][1]
        assert describe_exit(WorkerExit.RUNTIME_ERROR) == "exit code 64 (RUNTIME_ERROR)"
        assert pool.stats().restarts == 1 and pool.stats().workers[0].memory_restarts == 0
    finally:
        await pool.aclose()


async def test_a_memory_kill_is_reported_apart_from_crashes(
    shm_unchanged: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="framepool.pool")
    # Any Python process is above 1 MiB of PSS: the first heartbeat after the attach kills the worker.
    pool = WorkerPool(settings(worker_memory_limit_mb=1, crash_loop_limit=100))
    await pool.start()
    try:
        sink = RecordingSink()
        await pool.attach(audio_spec("m", "tests.support.procs:Count"), sink)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the worker's restart")
        assert "exited with signal 9 (killed: " in sink.events[-1][1]
        assert "MiB over worker_memory_limit_mb = 1)" in sink.events[-1][1]
        stats = pool.stats().workers[0]
        assert stats.memory_restarts >= 1 and stats.memory_restarts == stats.restarts
        assert "restarting it (memory restart 1 of this worker)" in caplog.text
    finally:
        await pool.aclose()


async def test_an_attach_that_never_answers_kills_the_worker_and_fails_the_attach(
    shm_unchanged: None,
) -> None:
    """A processor whose constructor hangs: the attach fails after prewarm_timeout with one line, the worker
    is killed and replaced, and other streams can be attached (no endless re-attach of the hung one)."""
    pool = WorkerPool(settings(prewarm_timeout=1.0, ping_timeout=60.0))
    await pool.start()
    try:
        [hung] = pool.worker_pids()
        with pytest.raises(ProcessorError, match="did not start within prewarm_timeout = 1 s"):
            await pool.attach(audio_spec("h", "tests.support.procs:HangInInit"), RecordingSink())
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("ok", "tests.support.procs:Count"), sink)
        await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
        await stream.drain()
        assert [p["seq"] for p in sink.payloads("count")] == [1]
        assert hung not in pool.worker_pids() and pool.stats().restarts == 1
    finally:
        await pool.aclose()
