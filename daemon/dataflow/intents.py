"""What a data-flow pipeline asks for, and what it may read of the room (supervisor process).

The built-in processors never touch the room, a bridge or a worker themselves: they return *intents*, typed
values the supervisor's intake executes (publish to the room, hand to a bridge's spool, pass to the worker
pool, call RoomService). That keeps every stage synchronous, I/O-free and testable without a room, and puts
each side effect's rate limits and error handling in one place, the executor.

A route that picks its listeners by participant attribute (e.g. `lang`) reads the room through `RoomView`,
a read-only protocol the intake adapts the SDK's `rtc.Room` to; `StaticRoom` is a plain implementation for
offline runs and tests.

A `PublishData` or `SendText` with no `destinations` goes to every participant, as in LiveKit. The stages
therefore never emit one for a fan-out that matched nobody: they count `no_listeners` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, Protocol

import msgspec

from framepool.processors.messages import DataMessage, SenderKind


class PublishData(msgspec.Struct, frozen=True, kw_only=True, tag="publish_data"):
    """`local_participant.publish_data(payload, topic=, reliable=, destination_identities=)`."""

    topic: str
    payload: bytes
    reliable: bool = True
    destinations: tuple[str, ...] = ()  # identities; empty: everyone
    stage: str = ""  # the stage that asked, for logs and counters


class SendText(msgspec.Struct, frozen=True, kw_only=True, tag="send_text"):
    """`local_participant.send_text(text, topic=, destination_identities=)` (chat, long text)."""

    topic: str
    text: str
    destinations: tuple[str, ...] = ()
    stage: str = ""


class SetAttributes(msgspec.Struct, frozen=True, kw_only=True, tag="set_attributes"):
    """`local_participant.set_attributes(attributes)`: synced state such as a poll tally. The aggregate stage
    already rate-limits these (`attribute_min_interval_s`), coalescing to the newest value."""

    attributes: dict[str, str]
    stage: str = ""


class ToBridge(msgspec.Struct, frozen=True, kw_only=True, tag="to_bridge"):
    """Append `message` to the spool of the bridge sink named `sink`."""

    sink: str
    message: DataMessage
    stage: str = ""


class ToProcessors(msgspec.Struct, frozen=True, kw_only=True, tag="to_processors"):
    """Hand `message` to the named data processors of the job (worker pool)."""

    processors: tuple[str, ...]
    message: DataMessage
    stage: str = ""


RoomActionKind = Literal["revoke_publish_data", "remove_participant"]


class RoomServiceAction(msgspec.Struct, frozen=True, kw_only=True, tag="room_service"):
    """A RoomService call against a participant of the job's room: `revoke_publish_data` is
    `UpdateParticipant(permission.can_publish_data = false)`, `remove_participant` is `RemoveParticipant`."""

    kind: RoomActionKind
    identity: str
    reason: str = ""
    stage: str = ""


Intent = PublishData | SendText | SetAttributes | ToBridge | ToProcessors | RoomServiceAction


class ParticipantView(Protocol):
    """One remote participant as a route sees it (the SDK's `rtc.RemoteParticipant` fits, given `kind`
    as a name)."""

    @property
    def identity(self) -> str: ...

    @property
    def kind(self) -> str: ...  # a SenderKind name: "standard", "sip", "agent", ...

    @property
    def attributes(self) -> Mapping[str, str]: ...


class RoomView(Protocol):
    """The room's remote participants, read-only, as of now (never the local participant)."""

    def participants(self) -> Iterable[ParticipantView]: ...

    def participant(self, identity: str) -> ParticipantView | None: ...


class Participant(msgspec.Struct, frozen=True, kw_only=True):
    """A plain `ParticipantView`."""

    identity: str
    kind: SenderKind = "standard"
    attributes: dict[str, str] = {}


class StaticRoom:
    """A `RoomView` over a dict the caller updates (offline runs, tests)."""

    def __init__(self, participants: Iterable[Participant] = ()) -> None:
        self.members: dict[str, Participant] = {p.identity: p for p in participants}

    def participants(self) -> Iterable[ParticipantView]:
        return self.members.values()

    def participant(self, identity: str) -> ParticipantView | None:
        return self.members.get(identity)

    def join(self, participant: Participant) -> None:
        self.members[participant.identity] = participant

    def leave(self, identity: str) -> None:
        self.members.pop(identity, None)
