"""The data-plane message type every process shares (framepool.processors.messages)."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from framepool.processors.messages import DataMessage, new_event_id


def test_event_ids_are_uuid7_unique_and_ordered_by_time() -> None:
    ids = [new_event_id(now_ns=ms * 1_000_000) for ms in (1_700_000_000_000, 1_700_000_000_001)]
    ids += [new_event_id() for _ in range(1000)]
    parsed = [uuid.UUID(text) for text in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(ids)) == len(ids)
    assert ids[0] < ids[1] < ids[2]  # the text sorts by creation time (millisecond resolution)
    assert int(parsed[0].hex[:12], 16) == 1_700_000_000_000  # the first 48 bits are Unix milliseconds


def test_a_message_round_trips_and_decodes_its_payload() -> None:
    message = DataMessage(
        event_id=new_event_id(),
        seq=1,
        job="AJ_1",
        room="poll",
        kind="packet",
        topic="vote",
        sender="alice",
        sender_kind="standard",
        received_us=1,
        payload=b'{"choice": "b"}',
    )
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(message), type=DataMessage) == message
    assert message.json() == {"choice": "b"} and message.text() == '{"choice": "b"}'
    with pytest.raises(msgspec.DecodeError):
        msgspec.structs.replace(message, payload=b"\xff not json").json()
