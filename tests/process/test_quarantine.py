"""Blame and quarantine with real workers (issue 9, items 1-3): a processor that stalls, crashes the worker
(os._exit, SIGSEGV), leaks or fails to start sits beside healthy processors on the same worker; the bad one
is quarantined after `quarantine_incidents` incidents while the healthy stream on that worker loses no
frame, and the pool goes on. Also: a heavy but steady processor never costs a restart offline."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from framepool.errors import ProcessorError
from framepool.pool import StreamAttachment, StreamSpec, WorkerPool
from framepool.processors.registry import parse_spec
from tests.support.pool import AUDIO_10MS, RecordingSink, audio_frame, audio_spec, i420, settings

pytestmark = pytest.mark.process
COUNT = "tests.support.procs:Count"
STALL = "tests.support.procs:Stall"


async def started(**overrides: Any) -> WorkerPool:
    pool = WorkerPool(settings(quarantine_incidents=2, **overrides))
    await pool.start()
    return pool


class Neighbour:
    """A healthy offline stream on the same worker: every frame it is given must be processed."""

    def __init__(self, stream: StreamAttachment, sink: RecordingSink) -> None:
        self.stream, self.sink, self.seq = stream, sink, 0

    async def feed(self, frames: int) -> None:
        for _ in range(frames):
            self.seq += 1
            await self.stream.push_wait(audio_frame(self.seq), self.seq, AUDIO_10MS)

    async def check(self) -> None:
        await self.stream.drain()
        stats = self.stream.stats()
        assert stats.processed == self.seq and stats.lost == 0 and stats.dropped == 0, stats
        assert [p["seq"] for p in self.sink.payloads("count")] == list(range(1, self.seq + 1))


async def quarantine_run(bad: str, trigger: Any, **overrides: Any) -> None:
    """`bad` beside Count on one stream, a Count neighbour on the same worker; `trigger(pool, stream, seq)`
    provokes one incident. Asserts quarantine after two incidents and what must keep flowing."""
    pool = await started(**overrides)
    try:
        good_sink, bad_sink = RecordingSink(), RecordingSink()
        neighbour = Neighbour(await pool.attach(audio_spec("good", COUNT), good_sink), good_sink)
        stream = await pool.attach(audio_spec("bad", f"{bad};{COUNT}", realtime=True), bad_sink)
        seq = 0
        for incident in (1, 2):
            await neighbour.feed(20)
            seq += 1
            await trigger(pool, stream, seq)
            await bad_sink.wait_for(
                lambda n=incident: bad_sink.event_names().count("worker_restarted") == n,  # type: ignore[misc]
                f"restart {incident}",
            )
        assert "processor_quarantined" in bad_sink.event_names()
        name = parse_spec(bad).name
        detail = next(d for e, d in bad_sink.events if e == "processor_quarantined")
        assert detail.startswith(f"{name}: 2 incidents"), detail
        await neighbour.feed(20)
        for _ in range(10):  # the bad processor no longer runs there; its neighbour on the stream does
            seq += 1
            await _push_live(stream, seq)
        await bad_sink.wait_for(lambda: any(p["seq"] == seq for p in bad_sink.payloads("count")), "counts")
        await neighbour.check()
        stats = stream.stats()
        assert stats.incidents == 2 and list(stats.quarantined) == [name], stats
        assert pool.stats().restarts == 2 and not pool.stats().halted
    finally:
        await pool.aclose()


async def _push_live(stream: StreamAttachment, seq: int) -> None:
    """A realtime push into a stream whose worker may be restarting: wait until it hosts the stream."""
    while not stream.push(audio_frame(seq), seq, AUDIO_10MS):
        await stream.drain()  # returns once the stream is live on a worker and its ring has room


async def one_frame(pool: WorkerPool, stream: StreamAttachment, seq: int) -> None:
    await _push_live(stream, seq)


@pytest.mark.parametrize("bad", ["tests.support.procs:ExitCrash", "tests.support.procs:Segfault"])
async def test_crashing_processor_is_quarantined_and_its_neighbours_lose_nothing(
    shm_unchanged: None, bad: str
) -> None:
    await quarantine_run(bad, one_frame)


async def test_stalling_processor_is_cut_off_at_its_hard_limit_and_quarantined(shm_unchanged: None) -> None:
    started_at = time.monotonic()
    # A 5 s call; the budget is 100 ms and the hard limit 2 budgets: cut off long before the ping timeout.
    await quarantine_run(
        "tests.support.procs:Stall(seconds=5.0)",
        one_frame,
        processor_budget_ms=100,
        processor_budget_hard=2,
        ping_timeout=30.0,
    )
    assert time.monotonic() - started_at < 5.0  # neither incident waited for the 5 s call to return


async def leak_until_killed(pool: WorkerPool, stream: StreamAttachment, seq: int) -> None:
    """Frames into the leaker until the heartbeat kills its worker for memory."""
    restarts = pool.stats().restarts
    frame = seq * 1000
    while pool.stats().restarts == restarts:
        frame += 1
        stream.push(audio_frame(frame), frame, AUDIO_10MS)
        await pool.next_heartbeat()


async def test_leaking_processor_is_blamed_for_the_memory_kill_and_quarantined(shm_unchanged: None) -> None:
    await quarantine_run(
        "tests.support.procs:Leak(mb_per_frame=40)",
        leak_until_killed,
        worker_memory_limit_mb=300,
        ping_interval=0.1,
    )


async def test_always_over_budget_processor_is_quarantined_without_a_restart(shm_unchanged: None) -> None:
    pool = await started(processor_budget_ms=20, processor_over_budget_limit=3)
    try:
        good_sink, bad_sink = RecordingSink(), RecordingSink()
        neighbour = Neighbour(await pool.attach(audio_spec("good", COUNT), good_sink), good_sink)
        stream = await pool.attach(
            audio_spec("bad", f"tests.support.procs:Stall(seconds=0.05);{COUNT}"), bad_sink
        )
        for seq in range(1, 11):
            await stream.push_wait(audio_frame(seq), seq, AUDIO_10MS)
        await neighbour.feed(50)
        await stream.drain()
        await neighbour.check()
        assert bad_sink.event_names() == ["processor_quarantined"]
        assert "3 calls in a row over its budget of 20 ms" in bad_sink.events[0][1]
        stats = stream.stats()
        assert list(stats.quarantined) == [STALL] and stats.processed == 10
        assert len(bad_sink.payloads("count")) == 10  # its neighbour on the stream saw every frame
        assert 0.14 < stats.busy[STALL] < 0.5  # three calls of 50 ms, then never again
        assert pool.stats().restarts == 0
    finally:
        await pool.aclose()


async def test_processor_failing_at_init_leaves_its_neighbours_running(shm_unchanged: None) -> None:
    pool = await started()
    try:
        good_sink = RecordingSink()
        neighbour = Neighbour(await pool.attach(audio_spec("good", COUNT), good_sink), good_sink)
        await neighbour.feed(20)
        with pytest.raises(ProcessorError, match="FileNotFoundError: no model at /nonexistent"):
            await pool.attach(audio_spec("bad", f"tests.support.procs:InitFail;{COUNT}"), RecordingSink())
        await neighbour.feed(20)
        await neighbour.check()
        assert pool.stats().restarts == 0
    finally:
        await pool.aclose()


class SlowEncoder(RecordingSink):
    """Stands in for `framepool process` encoding the output: each frame costs the supervisor's loop CPU."""

    def on_output_frame(self, stream_id: str, frame: Any) -> None:
        end = time.perf_counter() + 0.01
        while time.perf_counter() < end:
            pass
        self.events.append(("frame", ""))


async def test_heavy_steady_processor_publishing_video_offline_loses_nothing(shm_unchanged: None) -> None:
    # 25 ms per frame against a 1 s ping timeout: without progress-based liveness one pass over the backlog
    # (or one wait for the output ring) outlasts the timeout and the worker is killed mid-file.
    pool = await started(ping_timeout=1.0, ping_interval=0.1)
    try:
        shape = i420(640, 360)
        spec = StreamSpec(
            stream_id="v",
            kind="video",
            processors=[parse_spec("tests.support.procs:HeavyVideo(ms=25)")],
            realtime=False,
            max_frame_bytes=shape.nbytes,
            output_max_frame_bytes=shape.nbytes,
        )
        sink = SlowEncoder()
        stream = await pool.attach(spec, sink)
        frame = np.zeros(shape.nbytes, dtype=np.uint8)
        frames = 120
        for seq in range(1, frames + 1):
            await stream.push_wait(frame, seq * 40_000, shape)
        await stream.drain()
        stats = stream.stats()
        assert stats.processed == frames and stats.lost == 0 and stats.gaps == 0, stats
        assert sink.event_names().count("frame") == frames
        assert pool.stats().restarts == 0
    finally:
        await pool.aclose()


async def test_quarantine_is_carried_across_a_restart_the_processor_did_not_cause(
    shm_unchanged: None,
) -> None:
    pool = await started(processor_budget_ms=20, processor_over_budget_limit=2)
    try:
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("s", f"tests.support.procs:Stall(seconds=0.05);{COUNT}"), sink)
        for seq in range(1, 4):
            await stream.push_wait(audio_frame(seq), seq, AUDIO_10MS)
        await stream.drain()
        assert list(stream.stats().quarantined) == [STALL]
        import os
        import signal

        os.kill(pool.worker_pids()[0], signal.SIGKILL)  # an unblamed death (nothing in flight)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the restart")
        for seq in range(4, 14):
            await stream.push_wait(audio_frame(seq), seq, AUDIO_10MS)
        await stream.drain()
        stats = stream.stats()
        assert stats.busy[STALL] < 0.2 and stats.incidents == 0  # the new instance never ran it
        assert [p["seq"] for p in sink.payloads("count")][-10:] == list(range(4, 14))
    finally:
        await pool.aclose()


async def test_neighbour_loses_nothing_when_a_processor_stalls_its_worker_live(shm_unchanged: None) -> None:
    # Realtime neighbour at 10 ms frames while the bad stream's call holds the worker: with its ring kept,
    # it loses at most what overflows that ring during one cut-off window (320 ms of audio by default).
    pool = await started(processor_budget_ms=100, processor_budget_hard=2, ping_timeout=30.0)
    try:
        good_sink, bad_sink = RecordingSink(), RecordingSink()
        good = await pool.attach(audio_spec("good", COUNT, realtime=True), good_sink)
        bad = await pool.attach(
            audio_spec("bad", "tests.support.procs:Stall(seconds=5)", realtime=True), bad_sink
        )
        bad.push(audio_frame(1), 1, AUDIO_10MS)
        pushed = 0
        while "worker_restarted" not in bad_sink.event_names():
            pushed += 1
            good.push(audio_frame(pushed), pushed, AUDIO_10MS)
            await asyncio.sleep(0.01)  # a 10 ms realtime source
        for _ in range(20):
            pushed += 1
            good.push(audio_frame(pushed), pushed, AUDIO_10MS)
            await asyncio.sleep(0.01)
        await good.drain()
        stats = good.stats()
        window = int(0.2 / 0.01) + 32  # the cut-off window (2 x 100 ms) plus one heartbeat and the restart
        assert stats.processed + stats.dropped + stats.lost == pushed
        assert stats.lost == 0 and stats.dropped <= window, stats
    finally:
        await pool.aclose()


async def test_a_call_cut_off_at_its_hard_limit_leaves_its_stack_in_the_log(
    shm_unchanged: None, capfd: pytest.CaptureFixture[str]
) -> None:
    # spawn: the worker inherits this test's captured stderr (a forkserver keeps the one it started with).
    pool = await started(
        start_method="spawn", processor_budget_ms=100, processor_budget_hard=2, ping_timeout=30.0
    )
    try:
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("h", "tests.support.procs:Hang", realtime=True), sink)
        stream.push(audio_frame(1), 1, AUDIO_10MS)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the cut-off")
        assert "past its hard limit" in sink.events[-1][1] and "incident 1 of 2" in sink.events[-1][1]
    finally:
        await pool.aclose()
    import re

    assert re.search(r'File ".*tests/support/procs\.py", line \d+ in process', capfd.readouterr().err)
