"""`[[data.moderate]]`: a normalised, case-folded blocklist with drop / mask / flag (supervisor process).

A matching message's text (the payload, or one string field of a JSON payload) is folded (see
`framepool.dataflow.normalize`) and searched for blocklisted words and phrases on word boundaries. On a hit:
`drop` stops the message here, `mask` replaces each hit with `mask_char`s and lets it go on, `flag` lets it go
on with the attribute `framepool.moderation` set to the stage's name. Each hit can also be reported (a JSON
note on `notify_topic` to moderators, the flagged original to `notify_bridges`), and after
`room_action_after` hits one sender can lose its publish-data permission or be removed from the room
(a `RoomServiceAction` intent, once per sender).

LiveKit delivers a participant's packet to the other participants itself, so moderation only holds back what
framepool re-broadcasts: clients send to the agent only (destination identities), and a route re-publishes
what passes (docs/dataflows-processors.md shows the set-up).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import msgspec

from framepool.dataflow.config import ModerateConfig, config_error
from framepool.dataflow.envelope import Envelope, field_path
from framepool.dataflow.intents import (
    Intent,
    PublishData,
    RoomActionKind,
    RoomServiceAction,
    RoomView,
    ToBridge,
)
from framepool.dataflow.match import Matcher
from framepool.dataflow.normalize import fold, fold_with_map

FLAG_ATTRIBUTE = "framepool.moderation"


def blocklist_pattern(terms: list[str], where: str) -> re.Pattern[str]:
    """One regex for every term, folded, longest first, whitespace-insensitive, on word boundaries."""
    folded = []
    for index, term in enumerate(terms):
        words = fold(term).split()
        if not words:
            raise config_error(where, f"blocklist[{index}]", term, "a word or phrase with letters")
        folded.append(r"\s+".join(re.escape(word) for word in words))
    if not folded:
        raise config_error(where, "blocklist", terms, "at least one word or phrase")
    alternatives = "|".join(sorted(set(folded), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def mask(text: str, pattern: re.Pattern[str], mask_char: str) -> tuple[str, int]:
    """`text` with every hit replaced by as many `mask_char`s as the hit has folded characters; and the
    number of hits."""
    folded, origin = fold_with_map(text)
    pieces: list[str] = []
    position = hits = 0
    for hit in pattern.finditer(folded):
        hits += 1
        start = origin[hit.start()]
        end = origin[hit.end()] if hit.end() < len(origin) else len(text)
        pieces += [text[position:start], mask_char * (hit.end() - hit.start())]
        position = end
    pieces.append(text[position:])
    return "".join(pieces), hits


class Moderate:
    """A compiled `ModerateConfig`."""

    def __init__(self, config: ModerateConfig, where: str) -> None:
        self.config = config
        self.name = "moderate:" + (config.name or where)
        self.counters: Counter[str] = Counter()
        self.matcher = Matcher(config.match)
        self.pattern = blocklist_pattern(config.blocklist, where)
        self.field = field_path(config.field, where, "field")
        if len(config.mask_char) != 1:
            raise config_error(where, "mask_char", config.mask_char, "one character")
        if config.room_action_after < 1:
            raise config_error(where, "room_action_after", config.room_action_after, "1 or more")
        self._strikes: dict[str, int] = {}  # sender → hits, oldest first, bounded
        self._actioned: set[str] = set()

    def __call__(self, envelope: Envelope, room: RoomView, out: list[Intent]) -> Envelope | None:
        """The envelope to go on with (masked or flagged on a hit), or None: dropped."""
        message = envelope.message
        if not self.matcher(message, room):
            return envelope
        self.counters["checked"] += 1
        text, document = self._text(envelope)
        if text is None:
            return envelope
        if len(text) > self.config.max_chars:
            self.counters["oversize"] += 1
            self.counters["dropped"] += 1
            return None
        terms = self.pattern.findall(fold(text))
        if not terms:
            return envelope
        self.counters["hits"] += 1
        self._report(envelope, terms, out)
        action = self.config.action
        self.counters[{"drop": "dropped", "mask": "masked", "flag": "flagged"}[action]] += 1
        if action == "drop":
            return None
        if action == "flag":
            attributes = {**message.attributes, FLAG_ATTRIBUTE: self.name}
            return Envelope(msgspec.structs.replace(message, attributes=attributes))
        masked, hits = mask(text, self.pattern, self.config.mask_char)
        if not hits:  # the character-wise fold disagreed with the fast one (never seen): fail closed
            self.counters["mask_failed"] += 1
            return None
        payload = masked.encode() if document is None else self._with_field(document, masked)
        return Envelope(msgspec.structs.replace(message, payload=payload))

    def _text(self, envelope: Envelope) -> tuple[str | None, Any]:
        """(the text to check, the JSON document it came from when `field` is set)."""
        if not self.field:
            return envelope.message.text(), None
        value = document = envelope.json() if envelope.is_json() else None
        for part in self.field:
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str):
            self.counters["not_text"] += 1
            return None, None
        return value, document

    def _with_field(self, document: Any, text: str) -> bytes:
        copy = msgspec.json.decode(msgspec.json.encode(document))  # the envelope's JSON is shared
        node = copy
        for part in self.field[:-1]:
            node = node[part]
        node[self.field[-1]] = text
        return msgspec.json.encode(copy)

    def _report(self, envelope: Envelope, terms: list[str], out: list[Intent]) -> None:
        message, config = envelope.message, self.config
        if config.notify_topic and config.notify_destinations:
            note = {
                "moderation": self.name,
                "action": config.action,
                "event_id": message.event_id,
                "sender": message.sender,
                "topic": message.topic,
                "terms": sorted(set(terms)),
            }
            payload = msgspec.json.encode(note)
            destinations = tuple(config.notify_destinations)
            out.append(PublishData(topic=config.notify_topic, payload=payload, destinations=destinations))
        if config.notify_bridges:
            flagged = msgspec.structs.replace(
                message, attributes={**message.attributes, FLAG_ATTRIBUTE: self.name}
            )
            out.extend(
                ToBridge(sink=sink, message=flagged, stage=self.name) for sink in config.notify_bridges
            )
        if config.room_action != "none" and message.sender:
            self._strike(message.sender, out)

    def _strike(self, sender: str, out: list[Intent]) -> None:
        strikes = self._strikes.pop(sender, 0) + 1
        self._strikes[sender] = strikes  # re-inserted: most recent last
        if len(self._strikes) > self.config.max_tracked_senders:
            oldest = next(iter(self._strikes))
            del self._strikes[oldest]
            self._actioned.discard(oldest)
            self.counters["senders_forgotten"] += 1
        if strikes >= self.config.room_action_after and sender not in self._actioned:
            self._actioned.add(sender)
            self.counters["room_actions"] += 1
            kind: RoomActionKind = "remove_participant"
            if self.config.room_action == "revoke_publish_data":
                kind = "revoke_publish_data"
            reason = f"{self.name}: {strikes} blocklisted message(s)"
            out.append(RoomServiceAction(kind=kind, identity=sender, reason=reason, stage=self.name))
