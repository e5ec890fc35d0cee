"""What the Redis Streams and PostgreSQL sinks make of a DataMessage, without a server (test process): a
stream entry decodes back to the same message for any payload, key templates and table names are checked
when the config is read, and the events PostgreSQL could never store are recognised before sending. The
same round trips through real servers: tests/process/test_redis_sink.py, test_postgres_sink.py."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import example, given

from framepool.bridge.postgres_sink import PostgresConfig, refusal
from framepool.bridge.redis_sink import RedisStreamsConfig, entry_fields, message_from_entry, stream_key
from framepool.processors.messages import DataMessage, new_event_id
from tests.support.sink_data import fuzz, messages

PLAIN = DataMessage(
    event_id=new_event_id(), seq=1, job="j", room="lobby", kind="text", topic="lk.chat",
    sender="alice", sender_kind="standard", received_us=1, payload=b"hi",
)  # fmt: skip


@fuzz(300)
@given(msg=messages())
@example(msg=msgspec.structs.replace(PLAIN, payload=b"\xff\x00\xfe", attributes={"k": "\x00é"}))
def test_a_stream_entry_holds_every_field_of_any_message(msg: DataMessage) -> None:
    fields = {name.encode(): value for name, value in entry_fields(msg).items()}
    assert set(fields) == {name.encode() for name in msg.__struct_fields__}
    assert message_from_entry(fields) == msg


def test_the_key_template_names_fields_of_the_message() -> None:
    assert stream_key("framepool:{room}:{topic}", PLAIN) == "framepool:lobby:lk.chat"
    assert stream_key("{job}/{kind}/{sender}", PLAIN) == "j/text/alice"
    for bad in ("framepool:{payload}", "framepool:{room!r}", "framepool:{room:>9}", "framepool:{0}"):
        with pytest.raises(msgspec.ValidationError, match="is not one of"):
            msgspec.convert({"key": bad}, RedisStreamsConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"maxlen": 0}, RedisStreamsConfig)


def test_table_names_are_plain_identifiers() -> None:
    assert msgspec.convert({"table": "audit.room_events"}, PostgresConfig).table == "audit.room_events"
    for bad in ("Events", "events; drop table x", '"events"', "a.b.c", "1events", ""):
        with pytest.raises(msgspec.ValidationError, match="table"):
            msgspec.convert({"table": bad}, PostgresConfig)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event_id": "not-a-uuid"}, "not a UUID"),
        ({"room": "lob\x00by"}, "NUL"),
        ({"attributes": {"k": "v\x00"}}, "NUL"),
        ({"attributes": {"k\x00": "v"}}, "NUL"),
        ({"sender": "\ud800"}, "surrogate"),
        ({"seq": 2**63}, "bigint"),
    ],
)
def test_events_postgres_cannot_hold_are_recognised(change: dict[str, object], reason: str) -> None:
    assert refusal(PLAIN) is None
    assert reason in (refusal(msgspec.structs.replace(PLAIN, **change)) or "")
