"""`[...match]`: which messages a stage takes (supervisor process).

Kind, topic glob, sender identity glob, sender participant kind, and attribute predicates (equals one value,
is one of several, exists) on the message's own attributes or on the sender's current participant
attributes (read through the `RoomView`). Cheapest checks first; all of them O(1) in the room's size.
"""

from __future__ import annotations

from collections.abc import Mapping

from framepool.dataflow.config import AttributePredicate, MatchConfig
from framepool.dataflow.envelope import glob
from framepool.dataflow.intents import RoomView
from framepool.processors.messages import DataMessage


def _predicate(config: AttributePredicate) -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple(
        (key, frozenset([value]) if isinstance(value, str) else frozenset(value))
        for key, value in config.items()
    )


def _holds(predicate: tuple[tuple[str, frozenset[str]], ...], attributes: Mapping[str, str]) -> bool:
    return all(attributes.get(key) in allowed for key, allowed in predicate)


class Matcher:
    """A compiled `MatchConfig`."""

    def __init__(self, config: MatchConfig) -> None:
        self._kinds = frozenset(config.kind)
        self._topic = glob(config.topic)
        self._sender = glob(config.sender)
        self._sender_kinds = frozenset(config.sender_kind)
        self._attributes = _predicate(config.attributes)
        self._has = tuple(config.has_attributes)
        self._sender_attributes = _predicate(config.sender_attributes)

    def __call__(self, message: DataMessage, room: RoomView) -> bool:
        if self._kinds and message.kind not in self._kinds:
            return False
        if self._topic is not None and not self._topic.fullmatch(message.topic):
            return False
        if self._sender is not None and not self._sender.fullmatch(message.sender):
            return False
        if self._sender_kinds and message.sender_kind not in self._sender_kinds:
            return False
        if not _holds(self._attributes, message.attributes):
            return False
        if any(key not in message.attributes for key in self._has):
            return False
        if self._sender_attributes:
            participant = room.participant(message.sender)
            if participant is None or not _holds(self._sender_attributes, participant.attributes):
                return False
        return True
