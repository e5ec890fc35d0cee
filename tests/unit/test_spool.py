"""The on-disk spool (framepool.ipc.spool) on real files: order, torn tails, bounds, checkpoints, recovery,
and a fuzz of the reader on random bytes (test process)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framepool.ipc.spool import (
    CHECKPOINT,
    SpoolBusy,
    SpoolReader,
    SpoolWriter,
    encode_record,
    list_segments,
    segment_name,
)
from framepool.processors.messages import DataMessage, new_event_id


def message(seq: int, room: str = "r", payload: bytes = b"x" * 40) -> DataMessage:
    return DataMessage(
        event_id=new_event_id(), seq=seq, job="J", room=room, kind="packet", topic="t", sender="alice",
        sender_kind="standard", received_us=seq, payload=payload,
    )  # fmt: skip


def writer(
    directory: Path, max_bytes: int = 1 << 20, segment_bytes: int = 1 << 20, commit_interval: float = 0.01
) -> SpoolWriter:
    return SpoolWriter(
        directory, max_bytes=max_bytes, commit_interval=commit_interval, segment_bytes=segment_bytes
    )


def read_all(reader: SpoolReader) -> list[DataMessage]:
    out = []
    while batch := reader.read(7):
        out.extend(record.message for record in batch)
    return out


def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = writer(tmp_path, segment_bytes=1000)
    sent = [message(seq) for seq in range(1, 51)]
    assert all(spool.append(item) for item in sent)
    assert len(list_segments(tmp_path)) > 5
    reader = SpoolReader(tmp_path)
    assert read_all(reader) == sent
    assert spool.stats.appended == 50 and spool.stats.refused == 0
    assert spool.flush() == spool.stats.committed == spool.position()
    spool.close()


def test_a_torn_tail_is_ignored_then_truncated_by_the_next_writer(tmp_path: Path) -> None:
    spool = writer(tmp_path)
    sent = [message(seq) for seq in range(1, 11)]
    for item in sent:
        spool.append(item)
    spool.close()
    segment = tmp_path / segment_name(list_segments(tmp_path)[-1])
    os.truncate(segment, segment.stat().st_size - 5)  # the last record, cut mid-body
    reader = SpoolReader(tmp_path)
    assert read_all(reader) == sent[:9]  # the live tail: waited on, never returned
    assert reader.read() == []
    spool = writer(tmp_path)  # recovery: truncates the torn record, starts a new segment
    later = [message(seq) for seq in range(11, 16)]
    for item in later:
        spool.append(item)
    assert read_all(reader) == later
    assert reader.corrupt == 0  # truncated by the writer: no damage left to skip
    assert read_all(SpoolReader(tmp_path)) == sent[:9] + later
    spool.close()


def test_garbage_after_the_last_good_record_of_a_final_segment_is_skipped(tmp_path: Path) -> None:
    spool = writer(tmp_path, segment_bytes=1 << 20)
    first = [message(seq) for seq in range(1, 4)]
    for item in first:
        spool.append(item)
    spool.close()
    with open(tmp_path / segment_name(list_segments(tmp_path)[-1]), "ab") as file:
        file.write(b"\xff" * 3 + encode_record(message(99))[:-1])
    spool = writer(tmp_path)
    later = [message(seq) for seq in range(4, 6)]
    for item in later:
        spool.append(item)
    assert read_all(SpoolReader(tmp_path)) == first + later
    spool.close()


def test_a_full_spool_refuses_the_newest_counts_them_and_takes_more_once_delivered(tmp_path: Path) -> None:
    record = len(encode_record(message(1)))
    # No timed commits here: only the explicit flush() below rescans the disk.
    spool = writer(tmp_path, max_bytes=record * 10, segment_bytes=record * 3, commit_interval=3600)
    results = [spool.append(message(seq)) for seq in range(1, 16)]
    assert results == [True] * 10 + [False] * 5
    assert spool.stats.refused == 5 and spool.stats.appended == 10
    reader = SpoolReader(tmp_path)
    delivered = read_all(reader)
    assert [item.seq for item in delivered] == list(range(1, 11))  # the oldest kept, the newest refused
    reader.commit(reader.position)  # deletes the spent segments
    assert not spool.append(message(16))  # the writer learns of the room at its next commit
    spool.flush()
    assert spool.append(message(17))
    assert [item.seq for item in read_all(reader)] == [17]
    spool.close()


def test_the_checkpoint_survives_a_new_reader_and_segments_are_never_reused(tmp_path: Path) -> None:
    spool = writer(tmp_path, segment_bytes=500)
    for seq in range(1, 21):
        spool.append(message(seq))
    reader = SpoolReader(tmp_path)
    batch = reader.read(12)
    reader.commit(batch[-1].end)
    assert list_segments(tmp_path)[0] == batch[-1].end.segment  # wholly delivered segments deleted
    assert [item.seq for item in read_all(SpoolReader(tmp_path))] == list(range(13, 21))
    reader = SpoolReader(tmp_path)
    reader.commit(reader.read(100)[-1].end)
    spool.close()
    for number in list_segments(tmp_path)[:-1]:
        (tmp_path / segment_name(number)).unlink()  # as if every old segment had been delivered and deleted
    checkpoint = (tmp_path / CHECKPOINT).read_text()
    spool = writer(tmp_path)
    spool.append(message(21))
    assert [item.seq for item in read_all(SpoolReader(tmp_path))] == [21], checkpoint
    spool.close()


def test_one_writer_per_spool(tmp_path: Path) -> None:
    spool = writer(tmp_path)
    with pytest.raises(SpoolBusy):
        writer(tmp_path)
    spool.close()
    writer(tmp_path).close()


def _fuzz_dir(tmp_path: Path, name: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    return directory


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=4096), final=st.booleans())
def test_random_bytes_yield_nothing_and_never_crash(tmp_path: Path, data: bytes, final: bool) -> None:
    directory = _fuzz_dir(tmp_path, new_event_id())
    (directory / segment_name(1)).write_bytes(data)
    if final:
        (directory / segment_name(2)).write_bytes(b"")
    reader = SpoolReader(directory)
    assert read_all(reader) == []


@FUZZ
@given(
    count=st.integers(1, 8),
    cut=st.integers(0, 10_000),
    noise=st.binary(min_size=1, max_size=64),
    payloads=st.lists(st.binary(max_size=300), min_size=8, max_size=8),
)
def test_damage_anywhere_yields_a_prefix_of_what_was_written(
    tmp_path: Path, count: int, cut: int, noise: bytes, payloads: list[bytes]
) -> None:
    sent = [message(seq, payload=payloads[seq - 1]) for seq in range(1, count + 1)]
    data = bytearray(b"".join(encode_record(item) for item in sent))
    position = cut % len(data)
    data[position : position + len(noise)] = noise  # overwrite (and maybe extend) with random bytes
    directory = _fuzz_dir(tmp_path, new_event_id())
    (directory / segment_name(1)).write_bytes(bytes(data))
    (directory / segment_name(2)).write_bytes(encode_record(sent[0]))  # makes segment 1 final
    got = read_all(SpoolReader(directory))
    assert got[-1:] == [sent[0]]  # the later segment is always reached
    assert got[:-1] == sent[: len(got) - 1]  # segment 1: a prefix of what was written, nothing invented


def test_a_full_spool_refuses_without_touching_the_disk(tmp_path: Path) -> None:
    """What keeps the supervisor's loop unaffected by a full spool: a refused append is a comparison and a
    count, no write (every file stays byte for byte as it was) and no wait; the refusals are all counted."""
    record = len(encode_record(message(1)))
    spool = writer(tmp_path, max_bytes=record * 4, segment_bytes=record * 4, commit_interval=3600)
    assert all(spool.append(message(seq)) for seq in range(1, 5))
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    refused = [spool.append(message(seq)) for seq in range(5, 10_005)]
    after = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert not any(refused) and spool.stats.refused == 10_000
    assert after == before
    spool.close()
