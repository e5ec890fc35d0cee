"""Helpers for the data-flow unit tests: messages, a room, a pipeline from TOML text, a settable clock."""

from __future__ import annotations

import tomllib
from typing import Any

import msgspec

from framepool.dataflow import Intent, Participant, Pipeline, StaticRoom, load_dataflow
from framepool.processors.messages import DataKind, DataMessage, SenderKind, new_event_id

T0 = 1_700_000_000.0  # a round wall-clock second, so window boundaries are easy to read


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def message(
    payload: Any = b"",
    *,
    kind: DataKind = "packet",
    topic: str = "t",
    sender: str = "alice",
    sender_kind: SenderKind = "standard",
    attributes: dict[str, str] | None = None,
    at: float = T0,
    room: str = "room",
    seq: int = 1,
) -> DataMessage:
    """A DataMessage; a payload that is not bytes or str is sent as JSON."""
    if isinstance(payload, str):
        raw = payload.encode()
    elif isinstance(payload, bytes):
        raw = payload
    else:
        raw = msgspec.json.encode(payload)
    return DataMessage(
        event_id=new_event_id(int(at * 1e9)),
        seq=seq,
        job="AJ_test",
        room=room,
        kind=kind,
        topic=topic,
        sender=sender,
        sender_kind=sender_kind,
        received_us=int(at * 1e6),
        attributes=attributes or {},
        payload=raw,
    )


def room(*participants: tuple[str, dict[str, str]] | str) -> StaticRoom:
    members = []
    for item in participants:
        identity, attributes = (item, {}) if isinstance(item, str) else item
        members.append(Participant(identity=identity, attributes=attributes))
    return StaticRoom(members)


def pipeline(toml: str, view: StaticRoom | None = None, clock: Clock | None = None) -> Pipeline:
    """A pipeline from the text of a `data` table ([[route]], [[aggregate]], ... at the top level)."""
    compiled = load_dataflow(tomllib.loads(toml), where="data")
    return compiled.pipeline(view or room(), job="AJ_test", room_name="room", clock=clock or Clock())


def of_type(intents: list[Intent], kind: type[Any]) -> list[Any]:
    return [intent for intent in intents if isinstance(intent, kind)]
