"""The worker pool with real worker processes, real rings and real signals (issue 2, items 4-8)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import sys

import numpy as np
import psutil
import pytest

from framepool.errors import CrashLoopError, PoolError, PoolHaltedError, ProcessorError
from framepool.ipc.lifecycle import WorkerExit
from framepool.ipc.slots import AudioShape, OutputVideo
from framepool.pool import PoolStats, StreamSpec, WorkerPool
from framepool.processors.registry import parse_spec
from tests.support.pool import (
    AUDIO_10MS,
    RecordingSink,
    audio_frame,
    audio_spec,
    i420,
    settings,
    wait_exited,
)
from tests.support.procs import prewarm_marker
from tests.support.timeouts import EVENT, PROCESS, PROMPT

pytestmark = pytest.mark.process


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if psutil.pid_exists(pid)]


async def started(**overrides: object) -> WorkerPool:
    pool = WorkerPool(settings(**overrides))
    await pool.start()
    return pool


async def test_offline_back_pressure_loses_nothing_and_shutdown_ladder(shm_unchanged: None) -> None:
    pool = await started(workers=2, audio_ring_ms=40)  # 4 slots of 10 ms
    try:
        pids = pool.worker_pids()
        assert len(pids) == 2
        for info in pool.stats().workers:  # each worker pinned to its own CPU
            assert os.sched_getaffinity(info.pid) == {info.cpu}
        sinks = [RecordingSink(), RecordingSink()]
        streams = [
            await pool.attach(audio_spec(f"s{i}", "tests.support.procs:Count"), sinks[i]) for i in range(2)
        ]
        assert {s.worker.slot for s in streams if s.worker} == {0, 1}  # least loaded: one per worker
        for seq in range(1, 301):
            for stream in streams:
                await stream.push_wait(audio_frame(seq), seq * 10_000, AUDIO_10MS)
        for stream, sink in zip(streams, sinks, strict=True):
            await stream.drain()
            assert [p["seq"] for p in sink.payloads("count")] == list(range(1, 301))
            stats = await stream.detach()
            assert (stats.pushed, stats.processed, stats.dropped, stats.lost) == (300, 300, 0, 0)
            assert sink.payloads("summary") == [{"frames": 300}]  # close() ran, its result delivered
            # A result carries the frame time of the frame being processed; close() the last one's.
            times = [r.frame_time_us for r in sink.results]
            assert times == [seq * 10_000 for seq in range(1, 301)] + [300 * 10_000]
            assert [r.seq for r in sink.results] == list(range(1, 302))  # per processor, from 1
            assert sink.event_names() == ["detached"]
    finally:
        codes = [info.exitcode for info in (await _closed(pool)).workers]
    assert codes == [WorkerExit.CLEAN, WorkerExit.CLEAN]
    assert _alive(pids) == []  # reaped by the ladder: no grace


async def _closed(pool: WorkerPool) -> PoolStats:
    await pool.aclose()
    await pool.aclose()  # idempotent
    return pool.stats()


async def test_realtime_overload_drops_are_counted_and_flagged(shm_unchanged: None) -> None:
    pool = await started(audio_ring_ms=40)  # 4 slots of 10 ms
    try:
        sink = RecordingSink()
        stream = await pool.attach(
            audio_spec("rt", "tests.support.procs:Count;tests.support.procs:Slow", realtime=True), sink
        )
        accepted = [stream.push(audio_frame(seq), seq, AUDIO_10MS) for seq in range(1, 201)]
        await stream.drain()
        stats = stream.stats()
        refused = accepted.count(False)
        assert refused > 0 and stats.dropped == refused
        assert stats.pushed == 200 and stats.processed == accepted.count(True)
        # The next frame written after the drops carries the gap flag.
        assert stream.push(audio_frame(201), 201, AUDIO_10MS)
        await stream.drain()
        assert sink.payloads("count")[-1] == {
            "seq": 201,
            "first": 201,
            "gap": True,
            "pid": pool.worker_pids()[0],
        }
        await stream.detach()
    finally:
        await pool.aclose()


async def test_processor_exceptions_counted_then_disabled_worker_survives(shm_unchanged: None) -> None:
    pool = await started(processor_failure_limit=3)
    try:
        pid = pool.worker_pids()[0]
        sink = RecordingSink()
        stream = await pool.attach(
            audio_spec("bad", "tests.support.procs:Fail(fail_from=3);tests.support.procs:Count"), sink
        )
        for seq in range(1, 11):
            await stream.push_wait(audio_frame(seq), seq, AUDIO_10MS)
        await stream.drain()
        assert sink.event_names() == ["processor_error", "processor_disabled"]
        assert "ValueError: bad frame 3" in sink.events[0][1]
        stats = await stream.detach()
        assert stats.errors == 3 and stats.processed == 10
        assert len(sink.payloads("count")) == 10  # the healthy processor on the stream kept going
        assert pool.worker_pids() == [pid] and pool.stats().restarts == 0
    finally:
        await pool.aclose()


async def test_bad_processor_is_a_clear_error(shm_unchanged: None) -> None:
    pool = await started()
    try:
        with pytest.raises(ProcessorError, match="cannot import 'no_such_module'"):
            await pool.attach(audio_spec("x", "no_such_module:Thing"), RecordingSink())
        with pytest.raises(ProcessorError, match="mix audio and video"):
            await pool.attach(
                audio_spec("x", "tests.support.procs:Count;tests.support.procs:EchoVideo"), RecordingSink()
            )
    finally:
        await pool.aclose()


async def test_worker_kill_9_mid_stream_is_replaced_and_stream_continues(shm_unchanged: None) -> None:
    pool = await started()
    try:
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("k", "tests.support.procs:Count"), sink)
        for seq in range(1, 51):
            await stream.push_wait(audio_frame(seq), seq, AUDIO_10MS)
        await stream.drain()
        old_pid = pool.worker_pids()[0]
        os.kill(old_pid, signal.SIGKILL)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the stream to be re-attached")
        assert f"pid {old_pid}" in sink.events[-1][1] and "signal 9" in sink.events[-1][1]
        for seq in range(51, 101):
            await stream.push_wait(audio_frame(seq), seq, AUDIO_10MS)
        await stream.drain()
        after = [p for p in sink.payloads("count") if p["pid"] != old_pid]
        assert [p["seq"] for p in after] == list(range(51, 101))  # results resume on the new worker
        assert after[0]["gap"] is True and not any(p["gap"] for p in after[1:])
        stats = stream.stats()
        assert stats.gaps == 1 and stats.processed == 100 and stats.lost == 0
        assert pool.stats().restarts == 1 and pool.worker_pids()[0] != old_pid
        assert _alive([old_pid]) == []  # reaped before it was replaced
    finally:
        await pool.aclose()


async def test_a_worker_killed_with_frames_in_flight_counts_exactly_those_frames_lost(
    shm_unchanged: None,
) -> None:
    """Ten frames processed, the eleventh in the processor when the worker is killed, four more waiting in
    the ring: exactly those five are lost, and every frame pushed is processed, dropped or lost."""
    pool = await started()
    try:
        sink = RecordingSink()
        processors = "tests.support.procs:Count;tests.support.procs:Stall(seconds=60, from_seq=11)"
        stream = await pool.attach(audio_spec("k", processors), sink)
        for seq in range(1, 16):
            await stream.push_wait(audio_frame(seq), seq, AUDIO_10MS)
        await sink.wait_for(lambda: len(sink.payloads("count")) == 11, "frame 11 to reach the stall")
        os.kill(pool.worker_pids()[0], signal.SIGKILL)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the stream to be re-attached")
        stats = stream.stats()
        assert (stats.pushed, stats.processed, stats.lost, stats.dropped) == (15, 10, 5, 0), stats
    finally:
        await pool.aclose()


async def test_counters_a_worker_scribbles_give_possible_statistics(shm_unchanged: None) -> None:
    """The worker owns its input ring's tail, read and skipped counters: scribbled, they still give stream
    figures that add up (nothing processed or skipped that was not pushed, nothing lost below zero)."""
    pool = await started()
    try:
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("s", "tests.support.procs:ScribbleCounters"), sink)
        for seq in range(1, 4):
            await stream.push_wait(audio_frame(seq), seq, AUDIO_10MS)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the stream to be re-attached")
        stats = stream.stats()
        assert stats.pushed == 3 and 0 <= stats.lost <= 3, stats
        assert stats.processed + stats.skipped <= stats.pushed, stats
    finally:
        await pool.aclose()


async def test_unresponsive_worker_is_killed_after_ping_timeout_and_replaced(shm_unchanged: None) -> None:
    pool = await started(ping_interval=0.1, ping_timeout=1.0)
    try:
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("h", "tests.support.procs:Hang"), sink)
        old_pid = pool.worker_pids()[0]
        stream.push(audio_frame(1), 1, AUDIO_10MS)
        await sink.wait_for(
            lambda: "worker_restarted" in sink.event_names(), "the hung worker to be replaced"
        )
        assert "signal 9" in sink.events[-1][1]
        assert pool.worker_pids()[0] != old_pid and pool.stats().restarts == 1
        assert _alive([old_pid]) == []  # reaped before it was replaced
    finally:
        await pool.aclose()


async def test_output_frames_reach_the_sink(shm_unchanged: None) -> None:
    pool = await started()
    try:
        sink = RecordingSink()
        size = 64 * 48 * 3 // 2
        spec = StreamSpec(
            stream_id="v",
            kind="video",
            processors=[parse_spec("tests.support.procs:EchoVideo")],
            realtime=False,
            max_frame_bytes=size,
            output_max_frame_bytes=size,
        )
        stream = await pool.attach(spec, sink)
        frames = [np.full(size, i, dtype=np.uint8) for i in range(5)]
        for i, frame in enumerate(frames):
            await stream.push_wait(frame, i, i420(64, 48))
        await stream.drain()
        assert [data for _, data in sink.frames] == [f.tobytes() for f in frames]
        output = sink.frames[0][0]
        assert isinstance(output, OutputVideo)
        assert (output.width, output.height, output.pixel_format, output.frame_time_us) == (64, 48, "I420", 0)
        await stream.detach()
    finally:
        await pool.aclose()


async def test_prewarm_timeout_is_a_clear_error(shm_unchanged: None) -> None:
    pool = WorkerPool(settings(prewarm="tests.support.procs:prewarm_slow", prewarm_timeout=1.0))
    with pytest.raises(
        PoolError,
        match=r"prewarm hook 'tests.support.procs:prewarm_slow' did not finish within prewarm_timeout = 1 s",
    ):
        await pool.start()
    assert _alive(pool.worker_pids()) == []
    assert pool.stats().workers[0].exitcode == -signal.SIGKILL


async def test_prewarm_exception_is_a_clear_error_and_halts_at_once(
    shm_unchanged: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="framepool.pool")
    pool = WorkerPool(settings(prewarm="tests.support.procs:prewarm_raise"))
    with pytest.raises(PoolHaltedError, match="raised RuntimeError: model file missing"):
        await pool.start()
    assert pool.stats().workers[0].exitcode == WorkerExit.PREWARM_FAILED
    assert "retrying" not in caplog.text  # decided on the exit code: another incarnation would fail too


async def test_crash_loop_at_boot_halts(shm_unchanged: None) -> None:
    pool = WorkerPool(
        settings(prewarm="tests.support.procs:prewarm_exit", crash_loop_limit=3, restart_backoff=0.01)
    )
    with pytest.raises(
        CrashLoopError,
        match=r"died 3 times in a row before becoming ready \(last: exit code 1\); halting",
    ):
        await pool.start()
    assert _alive(pool.worker_pids()) == []


async def test_memory_limit_restarts_the_worker(
    shm_unchanged: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="framepool.pool")
    pool = await started(worker_memory_limit_mb=1, ping_interval=0.1, crash_loop_limit=100)
    try:
        old_pid = pool.worker_pids()[0]
        assert psutil.pid_exists(old_pid)
        # Any Python process is above 1 MiB of PSS: the heartbeat kills it (wait off the loop, which must
        # run).
        assert await asyncio.to_thread(wait_exited, [old_pid], 20) == []
        assert f"pid {old_pid}) uses" in caplog.text and "(limit 1 MiB); restarting it" in caplog.text
    finally:
        await pool.aclose()


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
async def test_workers_die_with_a_killed_supervisor(shm_unchanged: None, start_method: str) -> None:
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.pool_orphan_script",
        start_method,
        stdout=asyncio.subprocess.PIPE,
        cwd=os.getcwd(),
    )
    try:
        assert supervisor.stdout is not None
        line = await asyncio.wait_for(supervisor.stdout.readline(), PROCESS)
        pids = json.loads(line)["workers"]
        assert len(pids) == 2 and all(psutil.pid_exists(pid) for pid in pids)
    finally:
        supervisor.kill()
        await supervisor.wait()
    assert supervisor.returncode == -signal.SIGKILL
    assert await asyncio.to_thread(wait_exited, pids, PROMPT) == []


async def test_crash_loop_after_a_restart_halts_the_pool(shm_unchanged: None) -> None:
    marker = prewarm_marker(os.getpid())
    pool = await started(
        prewarm="tests.support.procs:prewarm_first_only", crash_loop_limit=2, restart_backoff=0.01
    )
    try:
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("doomed", "tests.support.procs:Count"), sink)
        os.kill(pool.worker_pids()[0], signal.SIGKILL)
        await asyncio.wait_for(pool.halted.wait(), EVENT)
        assert "died 2 times in a row before becoming ready" in pool.halt_reason
        await sink.wait_for(lambda: "stream_failed" in sink.event_names(), "the stream to fail")
        with pytest.raises(PoolError, match="stopped: worker 0 died 2 times"):
            await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
        with pytest.raises(PoolError, match="halted"):
            await pool.attach(audio_spec("late", "tests.support.procs:Count"), RecordingSink())
        assert pool.stats().halted
    finally:
        await pool.aclose()
        os.unlink(marker)
    assert _alive(pool.worker_pids()) == []


async def test_realtime_video_skips_to_the_newest_frame(shm_unchanged: None) -> None:
    pool = await started(video_ring_slots=4)
    try:
        sink = RecordingSink()
        size = 32 * 16 * 3 // 2
        spec = StreamSpec(
            stream_id="rv",
            kind="video",
            processors=[parse_spec("tests.support.procs:SlowVideo")],
            max_frame_bytes=size,
        )
        stream = await pool.attach(spec, sink)
        frame = np.zeros(size, dtype=np.uint8)
        accepted = [stream.push(frame, seq, i420(32, 16)) for seq in range(1, 51)]
        await stream.drain()
        stats = stream.stats()
        assert stats.pushed == 50 and stats.dropped == accepted.count(False)
        assert stats.processed + stats.skipped + stats.dropped == 50  # every frame accounted for
        assert stats.processed < 50
        seen = sink.payloads("seen")
        assert seen == sorted(seen) and seen[-1] == max(seq for seq, ok in enumerate(accepted, 1) if ok)
        await stream.detach()
    finally:
        await pool.aclose()


async def test_shutdown_ladder_kills_a_worker_that_does_not_acknowledge(
    shm_unchanged: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="framepool.pool")
    pool = await started(worker_shutdown_timeout=0.5, ping_timeout=60.0)
    sink = RecordingSink()
    stream = await pool.attach(audio_spec("stuck", "tests.support.procs:Hang"), sink)
    pid = pool.worker_pids()[0]
    await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
    await sink.wait_for(lambda: bool(sink.payloads("hanging")), "the processor to hang")
    await pool.aclose()
    assert pool.stats().workers[0].exitcode == -signal.SIGKILL
    stats = await stream.detach()  # finished by aclose: rings freed, nothing waits forever
    assert stats.pushed == 1 and sink.events[-1][0] == "detached" and pool.stats().streams == 0
    rungs = [r.getMessage() for r in caplog.records if f"pid {pid}" in r.getMessage()]
    assert rungs == [
        f"worker 0 (pid {pid}): shutdown requested",
        f"worker 0 (pid {pid}): did not acknowledge shutdown within 0.5 s; killing it",
        f"worker 0 (pid {pid}): killed (signal 9)",
    ]
    assert _alive([pid]) == []


def _sigterm_ignored(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        mask = next(int(line.split()[1], 16) for line in status if line.startswith("SigIgn:"))
    return bool(mask & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
async def test_aclose_returns_only_when_every_worker_is_reaped(
    shm_unchanged: None, start_method: str
) -> None:
    pool = await started(workers=2, start_method=start_method)
    pids = pool.worker_pids()
    sink = RecordingSink()
    stream = await pool.attach(audio_spec("r", "tests.support.procs:Count"), sink)
    await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
    await pool.aclose()
    assert [pid for pid in pids if psutil.pid_exists(pid)] == []  # at once: no grace for a dying worker
    assert [w.exitcode for w in pool.stats().workers] == [WorkerExit.CLEAN, WorkerExit.CLEAN]


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
async def test_worker_that_closes_its_channel_but_lingers_is_killed_and_reaped(
    shm_unchanged: None, start_method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="framepool.pool")
    # The detach and acknowledge rungs must succeed, so they get PROMPT (a loaded 2-core machine can miss
    # 0.5 s); the exit rung never succeeds (the thread lingers) and costs that bound once.
    pool = await started(start_method=start_method, worker_shutdown_timeout=PROMPT)
    pid = pool.worker_pids()[0]
    await pool.attach(audio_spec("l", "tests.support.procs:LingerAtExit"), RecordingSink())
    await pool.aclose()  # detach runs close(): the worker acks the shutdown, then hangs in its exit
    assert not psutil.pid_exists(pid)
    assert pool.stats().workers[0].exitcode == -signal.SIGKILL
    rungs = [r.getMessage() for r in caplog.records if f"pid {pid}" in r.getMessage()]
    assert rungs == [
        f"worker 0 (pid {pid}): shutdown requested",
        f"worker 0 (pid {pid}): shutdown acknowledged",
        f"worker 0 (pid {pid}): acknowledged shutdown but did not exit within {PROMPT:.1f} s; killing it",
        f"worker 0 (pid {pid}): killed (signal 9)",
    ]


async def test_forkserver_survives_a_process_group_sigterm_and_still_reaps(shm_unchanged: None) -> None:
    pool = await started(workers=2, start_method="forkserver")
    pids = pool.worker_pids()
    server = psutil.Process(pids[0]).ppid()
    assert server != os.getpid() and _sigterm_ignored(server)
    os.kill(server, signal.SIGTERM)  # as `kill -TERM -- -<pgid>` would
    await pool.aclose()
    assert [pid for pid in pids if psutil.pid_exists(pid)] == []
    assert [w.exitcode for w in pool.stats().workers] == [WorkerExit.CLEAN, WorkerExit.CLEAN]
    assert psutil.pid_exists(server)


@pytest.mark.parametrize(("frame_ms", "slots"), [(10, 32), (100, 4)])
async def test_audio_ring_holds_audio_ring_ms_of_the_processors_frames(
    shm_unchanged: None, frame_ms: int, slots: int
) -> None:
    pool = await started(worker_shutdown_timeout=0.5, ping_timeout=60.0)  # default audio_ring_ms = 320
    try:
        sink = RecordingSink()
        samples = 48 * frame_ms
        spec = StreamSpec(
            stream_id="a",
            kind="audio",
            processors=[parse_spec(f"tests.support.procs:Hang(frame_ms={frame_ms})")],
            max_frame_bytes=samples * 2,
        )
        stream = await pool.attach(spec, sink)
        frame, shape = np.zeros(samples, np.int16), AudioShape(48000, 1, samples)
        assert stream.push(frame, 1, shape)
        await sink.wait_for(lambda: bool(sink.payloads("hanging")), "the processor to hang on frame 1")
        accepted = [stream.push(frame, seq, shape) for seq in range(2, 2 + 2 * slots)]
        assert accepted.count(True) == slots - 1  # frame 1 still holds its slot
        assert stream.stats().dropped == slots + 1
    finally:
        await pool.aclose()


def _block_mean(plane: np.ndarray, factor: int) -> np.ndarray:
    h, w = plane.shape[0] // factor, plane.shape[1] // factor
    blocks = plane[: h * factor, : w * factor].reshape(h, factor, w, factor).astype(np.float64)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)


async def test_video_scaled_down_per_processor_maximum(shm_unchanged: None) -> None:
    pool = await started()
    try:
        sink = RecordingSink()
        width, height = 640, 360
        size = width * height * 3 // 2
        processors = ["tests.support.procs:SizeProbe(max_width=160)", "tests.support.procs:SizeProbe"]
        spec = StreamSpec(
            stream_id="scaled",
            kind="video",
            processors=[parse_spec(p) for p in processors],
            realtime=False,
            max_frame_bytes=size,
        )
        stream = await pool.attach(spec, sink)
        rng = np.random.default_rng(7)
        frames = [rng.integers(0, 256, size, dtype=np.uint8) for _ in range(3)]
        for seq, frame in enumerate(frames, 1):
            await stream.push_wait(frame, seq, i420(width, height))
        await stream.drain()
        sizes = sink.payloads("size")  # per frame: the first processor's result, then the second's
        scaled, native = sizes[0::2], sizes[1::2]
        for frame, small, full in zip(frames, scaled, native, strict=True):
            y = frame[: width * height].reshape(height, width)
            u = frame[width * height : width * height * 5 // 4].reshape(height // 2, width // 2)
            v = frame[width * height * 5 // 4 :].reshape(height // 2, width // 2)
            expected = np.concatenate([_block_mean(plane, 4).ravel() for plane in (y, u, v)])
            assert (small["width"], small["height"], small["bytes"]) == (160, 90, 160 * 90 * 3 // 2)
            assert small["sha256"] == hashlib.sha256(expected.tobytes()).hexdigest()
            assert (full["width"], full["height"]) == (640, 360)
            assert full["sha256"] == hashlib.sha256(frame.tobytes()).hexdigest()
        assert [p["reused"] for p in scaled] == [False, True, True]  # one output buffer for the stream
        await stream.detach()
    finally:
        await pool.aclose()


async def test_memory_warning_is_logged_once_and_the_worker_keeps_running(
    shm_unchanged: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="framepool.pool")
    pool = await started(worker_memory_warn_mb=1, ping_interval=0.05)  # any Python process is above 1 MiB
    try:
        pid = pool.worker_pids()[0]
        for _ in range(8):  # eight memory checks, each above the line
            await asyncio.wait_for(pool.next_heartbeat(), EVENT)
        warnings = [r.getMessage() for r in caplog.records if "warning at 1 MiB" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].startswith(f"worker 0 (pid {pid}) uses ")
        assert pool.stats().workers[0].pss_bytes > 1 << 20
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("m", "tests.support.procs:Count"), sink)
        await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
        await stream.drain()
        assert sink.payloads("count")[0]["pid"] == pid
        assert pool.worker_pids() == [pid] and pool.stats().restarts == 0 and psutil.pid_exists(pid)
    finally:
        await pool.aclose()
    with pytest.raises(PoolError, match="closed"):
        await pool.next_heartbeat()


async def test_busy_seconds_are_current_without_drain_or_detach(shm_unchanged: None) -> None:
    pool = await started(ping_interval=0.05)
    try:
        sink = RecordingSink()
        stream = await pool.attach(
            audio_spec("b", "tests.support.procs:Count;tests.support.procs:Slow"), sink
        )
        assert stream.stats().busy == {"tests.support.procs:Count": 0.0, "tests.support.procs:Slow": 0.0}
        for seq in range(1, 51):
            await stream.push_wait(audio_frame(seq), seq, AUDIO_10MS)
        await sink.wait_for(lambda: len(sink.payloads("count")) == 50, "the frames to be processed")
        # Slow sleeps 2 ms per frame: 50 frames are at least 0.1 s, and the pongs that follow report it.
        async with asyncio.timeout(EVENT):
            while stream.stats().busy["tests.support.procs:Slow"] < 0.1:
                await pool.next_heartbeat()
        live = stream.stats().busy
        assert 0 < live["tests.support.procs:Count"] < live["tests.support.procs:Slow"]
        final = (await stream.detach()).busy
        assert final["tests.support.procs:Slow"] >= live["tests.support.procs:Slow"]
    finally:
        await pool.aclose()


async def test_workers_of_a_killed_forkserver_are_reaped_by_a_subreaper_supervisor(
    shm_unchanged: None,
) -> None:
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.pool_reaper_script",
        stdout=asyncio.subprocess.PIPE,
        cwd=os.getcwd(),
    )
    try:
        assert supervisor.stdout is not None
        report = json.loads(await asyncio.wait_for(supervisor.stdout.readline(), PROCESS))
        assert await asyncio.wait_for(supervisor.wait(), PROCESS) == 0
    finally:
        if supervisor.returncode is None:
            supervisor.kill()
            await supervisor.wait()
    assert report["alive"] == []  # checked by the supervisor itself as aclose returned
    assert report["exitcodes"] == [-signal.SIGKILL, -signal.SIGKILL]
