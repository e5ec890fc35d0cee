"""Data slots (issue 11, item 3): a DataMessage round-trips through both ring implementations (and crossed)
with the bit set of the processors it is for; what a buggy supervisor or a scribbled ring could hand a worker
as a data slot is a SlotError, never a misshapen message; the data kind's format, ring and API."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from framepool.errors import ProcessorError
from framepool.ipc.pyring import FrameHeader as Header
from framepool.ipc.ring import POLICY_DROP_NEWEST, implementation
from framepool.ipc.slots import (
    FMT_BYTES,
    FMT_MSGPACK,
    KIND_AUDIO,
    KIND_DATA,
    MAX_DATA_PROCESSORS,
    DataShape,
    SlotError,
    data_slot,
    decode_frame,
    decode_message,
)
from framepool.pool import format_groups, ring_slots
from framepool.processors.api import DataFormat
from framepool.processors.kinds import DATA, kind_of, media_kind
from framepool.processors.messages import DataMessage, new_event_id
from framepool.processors.registry import parse_spec, resolve
from framepool.settings import Settings

PAIRS = [("c", "c"), ("python", "python"), ("c", "python"), ("python", "c")]


def message(seq: int = 1, payload: bytes = b'{"choice": "B"}', **fields: Any) -> DataMessage:
    values: dict[str, Any] = {
        "event_id": new_event_id(),
        "seq": seq,
        "job": "AJ_1",
        "room": "poll",
        "kind": "packet",
        "topic": "vote",
        "sender": "alice",
        "sender_kind": "standard",
        "received_us": 1_700_000_000_000_000 + seq,
        "attributes": {"lang": "fr"},
        "payload": payload,
    }
    values.update(fields)
    return DataMessage(**values)


@pytest.fixture
def rings() -> Iterator[Callable[[str, str, int], tuple[Any, Any]]]:
    opened: list[Any] = []

    def make(writer: str, reader: str, slots: int = 4) -> tuple[Any, Any]:
        producer = implementation(writer).FrameRing.create(slots, 4096, POLICY_DROP_NEWEST)
        consumer = implementation(reader).FrameRing.attach(os.dup(producer.fd))
        opened.extend([consumer, producer])
        return producer, consumer

    yield make
    for ring in opened:
        ring.close()


def read(consumer: Any, processors: int) -> tuple[DataMessage, int, int]:
    peeked = consumer.peek()
    assert peeked is not None
    header, view = peeked
    try:
        decoded, targets = decode_message(header, view, processors)
        return decoded, targets, header.ts_us
    finally:
        del view, peeked
        consumer.release()


@pytest.mark.parametrize(("writer", "reader"), PAIRS)
def test_a_message_round_trips_with_the_processors_it_is_for(
    rings: Callable[..., tuple[Any, Any]], writer: str, reader: str
) -> None:
    producer, consumer = rings(writer, reader)
    sent = [message(1), message(2, payload=bytes(range(256)), kind="bytes", reliable=False, attributes={})]
    for number, msg in enumerate(sent):
        shape, data = data_slot(msg, targets=0b101 >> number)
        assert shape.write(producer, data, number + 1, msg.received_us)
    for number, msg in enumerate(sent):
        received, targets, ts_us = read(consumer, processors=3)
        assert received == msg and targets == 0b101 >> number and ts_us == msg.received_us
    assert consumer.peek() is None


def test_the_slot_shape_refuses_an_empty_or_too_wide_processor_set() -> None:
    with pytest.raises(ValueError, match="none, or beyond the 32"):
        DataShape(0)
    with pytest.raises(ValueError, match="none, or beyond the 32"):
        DataShape(1 << MAX_DATA_PROCESSORS)
    assert DataShape((1 << MAX_DATA_PROCESSORS) - 1).targets.bit_count() == 32


def test_a_message_larger_than_the_slot_is_refused_whole_never_split() -> None:
    """The decision in framepool.ipc.slots: every data packet fits the default slot; a long text is larger,
    and the caller (DataFeed.send) refuses it by comparing the encoding with the slot size."""
    fmt = DataFormat()
    _shape, packet = data_slot(message(payload=b"x" * 15 * 1024, attributes={"k" * 64: "v" * 256}), 1)
    assert len(packet) <= fmt.max_message_bytes
    _shape, long_text = data_slot(message(kind="text", payload=b"y" * fmt.max_message_bytes), 1)
    assert len(long_text) > fmt.max_message_bytes


def body(**changes: Any) -> bytes:
    """A valid message's msgpack with some fields replaced (as a buggy encoder or a scribble would)."""
    return msgspec.msgpack.encode(msgspec.structs.asdict(message()) | changes)


M = (KIND_DATA, FMT_MSGPACK)
FORGERIES = [
    pytest.param(KIND_AUDIO, FMT_MSGPACK, 1, 0, 0, b"", "not a data message", id="audio kind"),
    pytest.param(KIND_DATA, FMT_BYTES, 1, 0, 0, b"", "not a data message", id="format"),
    pytest.param(*M, 0, 0, 0, b"", "names processors 0x0", id="no processor"),
    pytest.param(*M, 0b100, 0, 0, b"", "names processors 0x4 of a stream with 2", id="bit"),
    pytest.param(*M, 1, 1, 0, b"", "b, c must be 0", id="b"),
    pytest.param(*M, 1, 0, 7, b"", "b, c must be 0", id="c"),
    pytest.param(*M, 1, 0, 0, b"\xc1", "does not decode", id="not msgpack"),
    pytest.param(*M, 1, 0, 0, msgspec.msgpack.encode({"seq": 1}), "does not decode", id="fields"),
    pytest.param(*M, 1, 0, 0, body(seq="1"), "does not decode", id="field type"),
    pytest.param(*M, 1, 0, 0, body(kind="x"), "does not decode", id="unknown kind"),
]


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize(("kind", "fmt", "a", "b", "c", "data", "why"), FORGERIES)
def test_malformed_data_slots_are_slot_errors(
    rings: Callable[..., tuple[Any, Any]],
    impl: str,
    kind: int,
    fmt: int,
    a: int,
    b: int,
    c: int,
    data: bytes,
    why: str,
) -> None:
    producer, consumer = rings(impl, impl)
    assert producer.write(data, 9, 1, kind, fmt, 0, a, b, c)
    with pytest.raises(SlotError, match=f"malformed slot \\(kind {kind}, seq 9\\): .*{why}"):
        read(consumer, processors=2)


def test_a_data_slot_is_not_a_frame() -> None:
    _shape, data = data_slot(message(), 1)
    header = Header(1, 1, KIND_DATA, FMT_MSGPACK, 0, 1, 0, 0, len(data))
    with pytest.raises(SlotError, match="not an audio or video frame"):
        decode_frame(header, memoryview(data), False)


u32 = st.integers(0, 2**32 - 1)
data_headers = st.builds(
    Header,
    seq=st.integers(0, 2**64 - 1),
    ts_us=st.integers(-(2**63), 2**63 - 1),
    kind=st.just(KIND_DATA) | st.integers(0, 6),
    fmt=st.just(FMT_MSGPACK) | st.integers(0, 7),
    flags=u32,
    a=st.integers(0, 8) | u32,
    b=st.just(0) | u32,
    c=st.just(0) | u32,
    length=st.just(0),  # replaced by the body's length
)
valid_body = msgspec.msgpack.encode(message())


@settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data_headers, st.binary(max_size=300) | st.just(valid_body), st.integers(0, 40), st.booleans())
@example(Header(1, 1, KIND_DATA, FMT_MSGPACK, 0, 1, 0, 0, 0), valid_body, 1, False)
def test_fuzzed_data_slots_decode_or_raise_slot_error(
    header: Header, body: bytes, processors: int, truncate: bool
) -> None:
    """Random descriptor words, random bytes and truncated valid bodies: a DataMessage for a processor the
    stream has, or a one-line SlotError; nothing else escapes to the worker's main loop."""
    if truncate and body:
        body = body[: len(body) // 2]
    words = (header.seq, header.ts_us, header.kind, header.fmt, header.flags, header.a, header.b, header.c)
    header = Header(*words, len(body))
    try:
        decoded, targets = decode_message(header, memoryview(body), processors)
    except SlotError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(decoded, DataMessage) and 0 < targets < 1 << processors


# -- the kind, its format and the API ----------------------------------------------------------------------


def test_the_data_kind_is_attachable_with_its_own_format_and_ring() -> None:
    assert (
        media_kind("data") is DATA and DATA.frame_type is DataMessage and DATA.realtime_ring == "drop_newest"
    )
    assert kind_of(DataFormat()) is DATA
    # The ring holds the processors' queue, not a media ring budget (a message has no duration).
    assert ring_slots(Settings(audio_ring_ms=320, video_ring_slots=6), DataFormat(queue=17)) == 17
    with pytest.raises(ValueError, match="max_message_bytes = 10: expected 1 KiB to 64 MiB"):
        DataFormat(max_message_bytes=10)
    with pytest.raises(ValueError, match="queue = 1: expected 2 to 4096"):
        DataFormat(queue=1)


def test_data_processors_share_one_stream_in_the_largest_format() -> None:
    specs = [
        parse_spec("tests.support.procs:CountMessages(max_message_bytes=65536, queue=8)"),
        parse_spec("tests.support.procs:CountMessages(queue=100)"),
    ]
    (group,) = format_groups(specs)
    assert group.kind is DATA and group.fmt == DataFormat(max_message_bytes=65536, queue=100)


def test_a_data_processor_is_referenced_by_spec_and_its_params_validated() -> None:
    resolved = resolve(parse_spec("tests.support.procs:CountMessages(stall_seq=3)"))
    assert resolved.kind is DATA and resolved.fmt == DataFormat()
    with pytest.raises(ProcessorError, match="bad parameter: stall_seq: Expected `int`, got `str`"):
        resolve(parse_spec('tests.support.procs:CountMessages(stall_seq="x")'))
