"""Data processors in a real worker pool (issue 11, item 3): room data messages reach them through a data
stream's shared-memory ring (msgpack slots naming their processors), drained in batches; results come back
through the result ring; a full ring refuses the newest message, counted; a worker killed mid-stream loses
exactly the messages in flight, and the stream continues on the replacement with fresh processor state."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from framepool.ipc.slots import data_slot
from framepool.pool import StreamAttachment, StreamSpec, WorkerPool
from framepool.processors.api import DataFormat
from framepool.processors.messages import DataMessage, new_event_id
from framepool.processors.registry import parse_spec
from tests.support.daemon import start_refused
from tests.support.pool import RecordingSink, settings
from tests.support.shm import shm_segments

pytestmark = pytest.mark.process

COUNT = "tests.support.procs:CountMessages"


def vote(seq: int) -> DataMessage:
    return DataMessage(
        event_id=new_event_id(),
        seq=seq,
        job="AJ_data",
        room="poll",
        kind="packet",
        topic="vote",
        sender=f"voter-{seq}",
        sender_kind="standard",
        received_us=1_700_000_000_000_000 + seq,
        payload=f'{{"choice": "{"ABC"[seq % 3]}"}}'.encode(),
    )


async def attach(
    pool: WorkerPool, *processors: str, queue: int = 64
) -> tuple[StreamAttachment, RecordingSink]:
    sink = RecordingSink()
    spec = StreamSpec(
        stream_id="AJ_data/data/0",
        kind="data",
        processors=[parse_spec(p) for p in processors],
        max_frame_bytes=DataFormat().max_message_bytes,
        labels={"room": "poll", "source": "data"},
    )
    return await pool.attach(spec, sink), sink


def send(stream: StreamAttachment, message: DataMessage, targets: int = 1) -> bool:
    """What DataFeed.send does: one msgpack encoding, one ring write, never a wait."""
    shape, data = data_slot(message, targets)
    return stream.push(data, message.received_us, shape)


async def test_a_data_processor_counts_messages_and_emits_for_each(shm_unchanged: None) -> None:
    pool = WorkerPool(settings())
    await pool.start()
    try:
        stream, sink = await attach(pool, f"{COUNT}(label=a)", f"{COUNT}(label=b)")
        # 30 messages for a, 20 for both, 10 for b: each slot reaches only the processors it names.
        targets = [0b01] * 30 + [0b11] * 20 + [0b10] * 10
        assert all([send(stream, vote(seq), bits) for seq, bits in enumerate(targets, 1)])
        await stream.drain()
        results = sink.payloads("data-count")
        by_label = {label: [r for r in results if r["label"] == label] for label in "ab"}
        assert [r["seq"] for r in by_label["a"]] == list(range(1, 51))
        assert [r["seq"] for r in by_label["b"]] == list(range(31, 61))
        assert [r["count"] for r in by_label["b"]] == list(range(1, 31))  # one instance, its own state
        first = by_label["a"][0]
        assert (first["kind"], first["topic"], first["sender"], first["text"]) == (
            "packet",
            "vote",
            "voter-1",
            '{"choice": "B"}',
        )
        # A result carries the received time of the message being handled (its frame time).
        assert [r.frame_time_us for r in sink.results[:3]] == [vote(s).received_us for s in (1, 2, 3)]
        stats = await stream.detach()
        assert sorted(p["count"] for p in sink.payloads("data-summary")) == [30, 50]
        assert (stats.pushed, stats.processed, stats.dropped, stats.lost, stats.errors) == (60, 60, 0, 0, 0)
    finally:
        await pool.aclose()


async def test_a_full_data_ring_refuses_the_newest_and_counts_it(shm_unchanged: None) -> None:
    """Queue of 4, the processor stalls on the first message: of 20 sent at once exactly 4 get in (the one
    being processed holds its slot), 16 are refused and counted; nothing blocks."""
    pool = WorkerPool(settings())
    await pool.start()
    try:
        stream, sink = await attach(pool, f"{COUNT}(stall_seq=1, stall_seconds=0.5, queue=4)")
        accepted = [send(stream, vote(seq)) for seq in range(1, 21)]
        assert accepted == [True] * 4 + [False] * 16
        await stream.drain()
        assert [p["seq"] for p in sink.payloads("data-count")] == [1, 2, 3, 4]  # the room's order
        stats = stream.stats()
        assert (stats.pushed, stats.processed, stats.dropped, stats.lost) == (20, 4, 16, 0)
        assert send(stream, vote(21))  # space again
        await stream.drain()
        assert stream.stats().processed == 5
    finally:
        await pool.aclose()


async def test_a_worker_killed_mid_stream_loses_exactly_the_messages_in_flight(shm_unchanged: None) -> None:
    """Ten messages processed, the eleventh in the processor when the worker is killed, four more waiting in
    the ring: exactly those five are lost. The stream goes on in the replacement with a fresh instance."""
    pool = WorkerPool(settings())
    await pool.start()
    try:
        stream, sink = await attach(pool, f"{COUNT}(stall_seq=11, stall_seconds=60)")
        assert all([send(stream, vote(seq)) for seq in range(1, 16)])
        await sink.wait_for(lambda: len(sink.payloads("data-count")) == 11, "message 11 to reach the stall")
        old_pid = pool.worker_pids()[0]
        os.kill(old_pid, signal.SIGKILL)
        await sink.wait_for(lambda: "worker_restarted" in sink.event_names(), "the stream to be re-attached")
        stats = stream.stats()
        assert (stats.pushed, stats.processed, stats.lost, stats.dropped, stats.gaps) == (15, 10, 5, 0, 1), (
            stats
        )
        assert all([send(stream, vote(seq)) for seq in range(16, 21)])
        await stream.drain()
        after = [p for p in sink.payloads("data-count") if p["pid"] != old_pid]
        assert [p["seq"] for p in after] == list(range(16, 21))
        assert [p["count"] for p in after] == list(range(1, 6))  # fresh processor state on the new worker
        stats = stream.stats()
        assert (stats.pushed, stats.processed, stats.lost) == (20, 15, 5)
    finally:
        await pool.aclose()


def test_a_declarative_data_processor_failing_to_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """The supervisor constructs declarative data processors once in a worker at start, as media ones."""
    before = shm_segments()
    config = tmp_path / "framepool.toml"
    config.write_text(
        'workers = 1\n\n[[agents]]\nagent_name = "counter"\n'
        f"data_processors = ['votes = {COUNT}(refuse=\"weights missing\")']\n"
        '[[agents.data.route]]\nmatch = { topic = "vote" }\nto_processors = ["votes"]\n'
    )
    result = start_refused(config)  # nothing listens at its LiveKit: refused before connecting
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f'processor {COUNT}(refuse="weights missing") failed to start: RuntimeError: weights missing' in (
        result.stderr
    )
    assert shm_segments() == before
