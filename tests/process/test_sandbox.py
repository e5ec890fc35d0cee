"""The opt-in worker sandbox against a hostile processor (issue 10, item 6).

This machine runs the tests as root, so the user switch is real: sandboxed workers run as `nobody`, with
no_new_privs, non-dumpable and the seccomp filter of `framepool.worker.sandbox`.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from framepool.errors import PoolHaltedError
from framepool.ipc.lifecycle import WorkerExit
from framepool.pool import WorkerPool
from tests.support.pool import AUDIO_10MS, RecordingSink, audio_frame, audio_spec, settings

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(os.getuid() != 0, reason="the user switch needs root"),
]


def _status(pid: int, field: str) -> str:
    with open(f"/proc/{pid}/status") as file:
        return next(line for line in file if line.startswith(field + ":")).split(":", 1)[1].strip()


async def _report(pool: WorkerPool, spec: str, stream_id: str, topic: str = "trespass") -> dict[str, Any]:
    sink = RecordingSink()
    stream = await pool.attach(audio_spec(stream_id, spec), sink)
    await stream.push_wait(audio_frame(1), 10_000, AUDIO_10MS)
    await sink.wait_for(lambda: bool(sink.payloads(topic)), f"the {topic} report")
    await stream.detach()
    report: dict[str, Any] = sink.payloads(topic)[0]
    return report


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
async def test_sandboxed_processor_cannot_reach_supervisor_or_neighbour(
    method: str, shm_unchanged: None
) -> None:
    pool = WorkerPool(settings(workers=2, start_method=method, sandbox=True))
    await pool.start()
    try:
        pids = pool.worker_pids()
        for pid in pids:
            assert _status(pid, "Uid").split() == ["65534"] * 4
            assert _status(pid, "NoNewPrivs") == "1"
            assert _status(pid, "Seccomp") == "2"  # filter mode
        # One hostile stream per victim: wherever placement puts them, one at least has a neighbour as victim.
        reports = [
            await _report(pool, f"tests.support.procs:Trespass(victim={pid})", f"hostile{i}")
            for i, pid in enumerate(pids)
        ]
        aimed = [report for report in reports if report["pid"] != report["victim"]]
        assert aimed
        for report in aimed:
            _assert_confined(report)
        # The supervisor's stack-dump signal is still handled (faulthandler), the worker goes on working.
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("counted", "tests.support.procs:Count"), sink)
        assert stream.worker is not None
        os.kill(stream.worker.pid, signal.SIGUSR1)
        for seq in range(1, 6):
            await stream.push_wait(audio_frame(seq), seq * 10_000, AUDIO_10MS)
        await stream.drain()
        assert [p["seq"] for p in sink.payloads("count")] == [1, 2, 3, 4, 5]
        await stream.detach()
    finally:
        await pool.aclose()
    assert [w.exitcode for w in pool.stats().workers] == [WorkerExit.CLEAN, WorkerExit.CLEAN]


def _assert_confined(report: dict[str, Any]) -> None:
    supervisor = str(os.getpid())
    assert supervisor in {str(pid) for pid in report["chain"]}  # it found the supervisor's pid...
    assert report["kill"][supervisor] == "PermissionError"  # ...and cannot signal it
    assert report["environ"][supervisor] == "PermissionError"
    assert report["fd_dir"][supervisor] == "PermissionError"
    assert report["kill_group"] == "PermissionError"  # kill(0, ...): the supervisor may share the group
    assert report["kill_victim"] == "PermissionError"
    assert report["victim_fds"] == "PermissionError"  # the neighbour's rings
    assert report["regain_root"] == "PermissionError"
    assert report["unshare"] == "EPERM"
    assert report["uid"] == 65534
    # What a worker must still do: signal itself, threads, numpy's BLAS.
    assert report["kill_self"] == "ok"
    assert report["thread"] is True and report["numpy"] == 64.0**3


async def test_unsandboxed_worker_keeps_the_supervisors_uid(shm_unchanged: None) -> None:
    pool = WorkerPool(settings(workers=1))
    await pool.start()
    try:
        report = await _report(pool, "tests.support.procs:Trespass", "hostile")
        assert report["uid"] == 0 and report["kill_group"] == "ok"  # the default trusts its processors
    finally:
        await pool.aclose()


async def test_sandbox_that_cannot_be_set_up_halts_with_one_line(shm_unchanged: None) -> None:
    pool = WorkerPool(settings(sandbox=True, sandbox_user="no-such-user-framepool"))
    with pytest.raises(
        PoolHaltedError, match="sandbox: sandbox_user 'no-such-user-framepool' does not exist"
    ):
        await pool.start()
    assert pool.stats().workers[0].exitcode == WorkerExit.SANDBOX_FAILED
