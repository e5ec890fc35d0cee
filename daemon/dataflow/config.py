"""The TOML shape of a job's data flows, validated with msgspec (supervisor process).

One `DataflowConfig` per agent: the `data` table of an `[[agents]]` entry, holding arrays of tables named
after the built-in processors (`[[agents.data.route]]`, `[[agents.data.transform]]`, ...); docs/dataflows-
processors.md shows each. `load_dataflow` converts and compiles it (JMESPath expressions, globs, topic
templates) and raises `ConfigError` with one line naming the key path, the value and what was expected, in
the style of `framepool.settings` (`bad setting agents[0].data.route[1].match.kind[0] = 'chat': expected
one of packet, text, ...`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from framepool.errors import ConfigError
from framepool.processors.messages import DataKind, SenderKind

AttributePredicate = dict[str, str | list[str]]  # equals one value / is one of the values


class MatchConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Which messages a stage takes; every condition given must hold, an empty one always does."""

    kind: list[DataKind] = []  # empty: every kind
    topic: str = "*"  # glob (fnmatch: * ? [abc]), on the topic (the RPC method for rpc)
    sender: str = "*"  # glob on the sender's identity
    sender_kind: list[SenderKind] = []  # e.g. ["sip"]
    attributes: AttributePredicate = {}  # on the message's attributes (stream attributes for streams)
    has_attributes: list[str] = []  # these keys exist in the message's attributes
    sender_attributes: AttributePredicate = {}  # on the sender's current participant attributes


class RoomOutputConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One room output of a route: re-publish the message (after moderation and transforms)."""

    topic: str = "{topic}"  # template: {topic} {sender} {kind} {room}
    send_as: Literal["auto", "data", "text"] = "auto"  # auto: text streams as text, the rest as data
    reliable: bool = True
    destinations: list[str] = []  # fixed identities
    destination_attribute: str = ""  # listeners chosen by this participant attribute ...
    destination_values: list[str] = []  # ... equal to one of these values, or
    destination_value_from: str = ""  # ... equal to this JMESPath over the message envelope
    include_sender: bool = False  # LiveKit never echoes a sender's own packet; neither does a route


class RouteConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    name: str = ""
    match: MatchConfig = MatchConfig()
    to_processors: list[str] = []  # data processor names of the job (worker pool)
    to_bridges: list[str] = []  # bridge sink names
    to_room: list[RoomOutputConfig] = []


class TransformConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    name: str = ""
    match: MatchConfig = MatchConfig()
    where: str = ""  # JMESPath predicate over the envelope; falsy: the message is dropped
    expression: str = ""  # JMESPath over the envelope; its result becomes the JSON payload
    non_json: Literal["pass", "drop"] = "pass"  # a payload that is not JSON skips the transform, or drops


Function = Literal["count", "sum", "mean", "min", "max", "last", "distinct"]


class AggregateConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    name: str
    match: MatchConfig = MatchConfig()
    where: str = ""  # JMESPath predicate over the envelope
    key: str = ""  # JMESPath over the envelope: the group; empty: one group, "all"
    value: str = ""  # JMESPath over the envelope; every function but count needs it
    function: Function = "count"
    per_sender: bool = False  # keep each sender's last (key, value) only: votes
    window: Literal["tumbling", "hopping", "global"] = "tumbling"
    size_s: float = msgspec.field(default=10.0)
    hop_s: float = 0.0  # hopping only
    lateness_s: float = 0.0  # how long a window waits for late events after its end
    emit: Literal["close", "every"] = "close"  # every: also a snapshot every `every_s` while open
    every_s: float = 1.0
    only_changed: bool = True  # snapshots only when the window changed since the last one
    to_topic: str = ""  # publish the result JSON on this topic
    reliable: bool = True
    destinations: list[str] = []
    attribute: str = ""  # set this attribute of the agent's participant to the results JSON
    attribute_min_interval_s: float = 1.0  # rate limit; the newest value wins, none is lost at the end
    to_bridges: list[str] = []
    max_keys: int = 1000
    max_senders: int = 10_000
    max_distinct: int = 1000


class ModerateConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    name: str = ""
    match: MatchConfig = MatchConfig()
    blocklist: list[str]  # words and phrases, matched on word boundaries after normalisation
    field: str = ""  # dotted path of the text in a JSON payload ("message.body"); empty: the whole payload
    action: Literal["drop", "mask", "flag"] = "drop"
    mask_char: str = "*"
    max_chars: int = 16_384  # longer texts are dropped unread (counted: oversize)
    notify_topic: str = ""  # a JSON report per hit, published to ...
    notify_destinations: list[str] = []  # ... these identities (e.g. moderators); empty: nobody
    notify_bridges: list[str] = []  # the hit message itself, flagged, to these sinks
    room_action: Literal["none", "revoke_publish_data", "remove_participant"] = "none"
    room_action_after: int = 1  # hits by one sender before the room action (once per sender)
    max_tracked_senders: int = 10_000


class TranscriptsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    name: str = "transcripts"
    topic: str = "lk.transcription"
    finals_only: bool = True
    to_bridges: list[str]
    key: Literal["segment", "event"] = "segment"  # event_id derived from (room, segment id), or kept
    remember_segments: int = 4096  # recently delivered final segment ids, to drop repeats


class DataflowConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A job's data flows: moderate → transform → aggregate → transcripts → route, each in file order."""

    moderate: list[ModerateConfig] = []
    transform: list[TransformConfig] = []
    aggregate: list[AggregateConfig] = []
    transcripts: list[TranscriptsConfig] = []
    route: list[RouteConfig] = []

    def sinks(self) -> set[str]:
        """Every bridge sink name a stage sends to (each must be a configured `[[sinks]]` name)."""
        lists = [stage.to_bridges for stage in self.route] + [stage.to_bridges for stage in self.aggregate]
        lists += [stage.to_bridges for stage in self.transcripts]
        lists += [stage.notify_bridges for stage in self.moderate]
        return {sink for names in lists for sink in names}


def convert(raw: Mapping[str, Any], where: str = "data") -> DataflowConfig:
    """The validated structure (no expression compiled yet); ConfigError naming the key path."""
    try:
        return msgspec.convert(raw, DataflowConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(explain(str(exc), raw, where)) from None


def explain(message: str, raw: Any, where: str) -> str:
    """msgspec's 'Expected `int`, got `str` - at `$.route[0].match`' as a settings-style line."""
    found = re.search(r" - at `\$(.*)`$", message)
    path = found.group(1) if found else ""
    expected = message[: found.start()] if found else message
    unknown = re.match(r"Object contains unknown field `(.+)`", expected)
    if unknown:
        return f"bad setting {where}{path}: unknown key {unknown.group(1)!r}"
    missing = re.match(r"Object missing required field `(.+)`", expected)
    if missing:
        return f"bad setting {where}{path}: missing required key {missing.group(1)!r}"
    value = _lookup(raw, path)
    choices = _choices(path)
    if choices and expected.startswith("Invalid enum value"):
        expected = "expected one of " + ", ".join(choices)
    elif expected.startswith("Expected `bool`"):
        expected = "expected true or false"
    return f"bad setting {where}{path} = {value!r}: {expected[0].lower() + expected[1:]}"


def _segments(path: str) -> list[str | int]:
    return [int(index) if index else name for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path)]


def _lookup(raw: Any, path: str) -> Any:
    for segment in _segments(path):
        try:
            raw = raw[segment]
        except (KeyError, IndexError, TypeError):
            return "?"
    return raw


def _choices(path: str) -> list[str]:
    """The allowed values of the Literal at `path` of DataflowConfig, if it is one."""
    node: Any = msgspec.inspect.type_info(DataflowConfig)
    for segment in _segments(path):
        node = _unwrap(node)
        if isinstance(segment, int) and isinstance(node, msgspec.inspect.ListType):
            node = node.item_type
        elif isinstance(node, msgspec.inspect.StructType):
            node = next((f.type for f in node.fields if f.name == segment), None)
        elif isinstance(node, msgspec.inspect.DictType):
            node = node.value_type
        else:
            return []
    node = _unwrap(node)
    return [str(value) for value in node.values] if isinstance(node, msgspec.inspect.LiteralType) else []


def _unwrap(node: Any) -> Any:
    return node.type if isinstance(node, msgspec.inspect.Metadata) else node


def config_error(where: str, key: str, value: Any, expected: str) -> ConfigError:
    """A settings-style ConfigError for a value msgspec accepted but a stage cannot use."""
    return ConfigError(f"bad setting {where}.{key} = {value!r}: {expected}")
