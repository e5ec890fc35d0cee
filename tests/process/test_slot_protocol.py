"""A worker that writes a malformed slot breaks the protocol: nothing of it reaches a sink, the worker is
killed and replaced, and the stream goes on (the supervisor trusts nothing a worker writes)."""

from __future__ import annotations

import psutil
import pytest

from framepool.pool import WorkerPool
from tests.support.pool import AUDIO_10MS, RecordingSink, audio_frame, audio_spec, settings

pytestmark = pytest.mark.process


@pytest.mark.parametrize("slot", ["result", "output"])
async def test_a_worker_writing_a_malformed_slot_is_killed_and_replaced(
    shm_unchanged: None, slot: str
) -> None:
    pool = WorkerPool(settings())
    await pool.start()
    try:
        sink = RecordingSink()
        processors = f"tests.support.procs:ForgeSlot(slot={slot});tests.support.procs:Count"
        stream = await pool.attach(audio_spec("f", processors, output_max_frame_bytes=64), sink)
        [forger] = pool.worker_pids()
        await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the worker to be replaced")
        assert "signal 9" in sink.events[-1][1]  # killed, not crashed
        # Only the other processor's results may have come through (the forged slot was never delivered).
        assert sink.frames == [] and {result.processor for result in sink.results} <= {
            "tests.support.procs:Count"
        }
        assert pool.stats().restarts == 1 and not psutil.pid_exists(forger)
        assert pool.stats().workers[0].protocol_restarts == 1
        await stream.push_wait(audio_frame(2), 2, AUDIO_10MS)  # frames after seq 1 are not forged
        await stream.drain()
        assert [p["seq"] for p in sink.payloads("count")][-1] == 2  # the stream goes on
    finally:
        await pool.aclose()


async def test_a_result_forged_under_another_streams_index_never_reaches_that_stream(
    shm_unchanged: None,
) -> None:
    """Two streams (of two jobs, in two rooms) share one worker and its result ring. A processor of the first
    writes well-formed results under the second's index: they carry the first stream's key, so none reaches
    the second stream's sink; the worker is killed as a protocol violation and both streams go on."""
    pool = WorkerPool(settings())
    await pool.start()
    try:
        victim_sink, forger_sink = RecordingSink(), RecordingSink()
        victim = await pool.attach(audio_spec("room-b", "tests.support.procs:Count"), victim_sink)
        forger = await pool.attach(
            audio_spec("room-a", "tests.support.procs:ForgeIndex;tests.support.procs:Count"), forger_sink
        )
        [worker] = pool.worker_pids()
        await victim.push_wait(audio_frame(1), 1, AUDIO_10MS)
        await victim.drain()
        await forger.push_wait(audio_frame(1), 1, AUDIO_10MS)
        await forger_sink.wait_for(
            lambda: "worker_restarted" in forger_sink.event_names(), "the worker to be replaced"
        )
        assert pool.stats().restarts == 1 and not psutil.pid_exists(worker)
        assert pool.stats().workers[0].protocol_restarts == 1
        for seq in (2, 3):
            await victim.push_wait(audio_frame(seq), seq, AUDIO_10MS)
            await forger.push_wait(audio_frame(seq), seq, AUDIO_10MS)
        await victim.drain()
        await forger.drain()
        assert all("forged" not in payload for payload in victim_sink.payloads("count"))
        assert [p["seq"] for p in victim_sink.payloads("count")][-1] == 3  # the victim goes on
        assert [p["seq"] for p in forger_sink.payloads("count")][-1] == 3
    finally:
        await pool.aclose()


async def test_a_processor_cannot_resize_the_shared_memory(shm_unchanged: None) -> None:
    """Every ring and doorbell memfd is sealed: a worker's ftruncate fails with EPERM, so it cannot make the
    supervisor's next access to the mapping a SIGBUS (this test process is the supervisor)."""
    pool = WorkerPool(settings())
    await pool.start()
    try:
        sink = RecordingSink()
        processors = "tests.support.procs:TruncateRings;tests.support.procs:Count"
        stream = await pool.attach(audio_spec("t", processors, output_max_frame_bytes=64), sink)
        for seq in range(1, 4):
            await stream.push_wait(audio_frame(seq), seq, AUDIO_10MS)
        await stream.drain()
        [report] = sink.payloads("truncate")
        # input, output and result rings, and the data, result and space doorbell pages
        assert report["tried"] >= 6 and report["refused"] == report["tried"]
        assert [p["seq"] for p in sink.payloads("count")] == [1, 2, 3]
        assert pool.stats().restarts == 0
    finally:
        await pool.aclose()


@pytest.mark.parametrize("reply", ["pong", "drained", "detached"])
async def test_a_reply_that_answers_no_request_is_a_protocol_violation(
    shm_unchanged: None, reply: str
) -> None:
    """Liveness the worker cannot fake, work it cannot order: an unsolicited pong, drain or detach reply
    kills and restarts the worker."""
    pool = WorkerPool(settings())
    await pool.start()
    try:
        sink = RecordingSink()
        stream = await pool.attach(audio_spec("p", f"tests.support.procs:FakePong(reply={reply})"), sink)
        [faker] = pool.worker_pids()
        await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the worker to be replaced")
        assert pool.stats().restarts == 1 and not psutil.pid_exists(faker)
        assert pool.stats().workers[0].protocol_restarts == 1
    finally:
        await pool.aclose()


async def test_a_worker_that_corrupts_its_result_ring_and_exits_is_replaced(shm_unchanged: None) -> None:
    """The drain at exit meets a corrupt ring: the exit is still handled (restart, re-attach), never a slot
    stuck 'ready' that accepts no stream."""
    pool = WorkerPool(settings(quarantine_incidents=1))
    await pool.start()
    try:
        sink = RecordingSink()
        processors = "tests.support.procs:CorruptThenExit;tests.support.procs:Count"
        stream = await pool.attach(audio_spec("c", processors), sink)
        await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the worker to be replaced")
        await stream.push_wait(audio_frame(2), 2, AUDIO_10MS)
        await stream.drain()
        assert [p["seq"] for p in sink.payloads("count")][-1] == 2  # the stream goes on
        other = await pool.attach(audio_spec("d", "tests.support.procs:Count"), RecordingSink())
        await other.detach()  # and new streams are still placed
        assert not pool.halted.is_set()
    finally:
        await pool.aclose()


async def test_a_worker_flooding_its_control_channel_is_killed(shm_unchanged: None) -> None:
    """More control messages than any worker sends (a ping a second, a few events) cost that worker a
    restart, never the supervisor's loop; the stream goes on."""
    pool = WorkerPool(settings())
    await pool.start()
    try:
        sink = RecordingSink()
        processors = "tests.support.procs:FloodControl;tests.support.procs:Count"
        stream = await pool.attach(audio_spec("f", processors, output_max_frame_bytes=64), sink)
        [flooder] = pool.worker_pids()
        await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the worker to be replaced")
        assert not psutil.pid_exists(flooder)
        await stream.push_wait(audio_frame(2), 2, AUDIO_10MS)
        await stream.drain()
        assert [p["seq"] for p in sink.payloads("count")][-1] == 2
    finally:
        await pool.aclose()


@pytest.mark.parametrize("request_", ["drain", "detach"])
async def test_a_worker_that_ignores_a_request_is_killed_at_its_deadline(
    shm_unchanged: None, request_: str
) -> None:
    """Liveness the worker cannot fake: it answers every ping but never a drain or detach. The request's
    deadline (ping_timeout without progress) kills it, and the drain or detach completes."""
    pool = WorkerPool(settings(ping_interval=0.2, ping_timeout=1.0))
    await pool.start()
    try:
        sink = RecordingSink()
        processors = "tests.support.procs:Count;tests.support.procs:SwallowReplies"
        stream = await pool.attach(audio_spec("r", processors), sink)
        [worker] = pool.worker_pids()
        await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
        await sink.wait_for(lambda: len(sink.payloads("count")) == 1, "the first frame to be processed")
        if request_ == "drain":
            await stream.drain()  # answered by the replacement, which has seen no frame
        else:
            stats = await stream.detach()
            assert stats.processed == 1, stats
        for _ in range(50):  # heartbeats (0.2 s) until the replacement has started
            if pool.stats().restarts:
                break
            await pool.next_heartbeat()
        assert pool.stats().restarts == 1 and not psutil.pid_exists(worker)
        assert pool.stats().workers[0].protocol_restarts == 0  # killed as hung, not as a protocol breaker
    finally:
        await pool.aclose()
