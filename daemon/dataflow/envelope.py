"""What expressions see of a message, and the compiled pieces of config they use (supervisor process).

Every JMESPath expression in a data-flow config (`where`, `expression`, `key`, `value`,
`destination_value_from`) is evaluated over one *envelope* per message, so an expression can use the sender
or a stream attribute as easily as a payload field:

    {"kind": "packet", "topic": "vote", "sender": "alice", "sender_kind": "standard", "room": "poll",
     "attributes": {...}, "received_us": 1700000000000000, "payload": <JSON value or null>, "text": "..."}

`payload` is the payload decoded as JSON (null when it is not JSON), `text` the payload as UTF-8. JMESPath is
a query language, not code: an expression cannot loop, import or allocate without bound beyond its input
(≤ 15 KiB for a packet, the intake's cap for a stream). A runtime error (e.g. `sum` over strings) counts and
drops the message for that stage; it never escapes the stage.
"""

from __future__ import annotations

import fnmatch
import re
import string
from typing import Any

import jmespath
import jmespath.exceptions
import msgspec
from jmespath.parser import ParsedResult

from framepool.dataflow.config import config_error
from framepool.processors.messages import DataMessage

_NOT_JSON = object()
_UNSET = object()


class Envelope:
    """A message with its payload decoded at most once, shared by the stages of one pass."""

    __slots__ = ("_json", "_view", "message")

    def __init__(self, message: DataMessage) -> None:
        self.message = message
        self._json: Any = _UNSET
        self._view: dict[str, Any] | None = None

    def json(self) -> Any:
        """The payload as JSON, or `NOT_JSON`."""
        if self._json is _UNSET:
            try:
                self._json = msgspec.json.decode(self.message.payload)
            except msgspec.DecodeError:
                self._json = _NOT_JSON
        return self._json

    def is_json(self) -> bool:
        return self.json() is not _NOT_JSON

    def view(self) -> dict[str, Any]:
        """The dict expressions are evaluated over (see the module docstring)."""
        if self._view is None:
            m = self.message
            payload = self.json()
            self._view = {
                "kind": m.kind,
                "topic": m.topic,
                "sender": m.sender,
                "sender_kind": m.sender_kind,
                "room": m.room,
                "attributes": m.attributes,
                "received_us": m.received_us,
                "payload": None if payload is _NOT_JSON else payload,
                "text": m.text(),
            }
        return self._view


class Expression:
    """A compiled JMESPath expression; `search` returns None on a runtime error and says so in `failed`."""

    def __init__(self, text: str, where: str, key: str) -> None:
        self.text = text
        try:
            self._parsed: ParsedResult = jmespath.compile(text)
        except jmespath.exceptions.JMESPathError as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise config_error(where, key, text, f"not a valid JMESPath expression ({detail})") from None

    def search(self, envelope: Envelope) -> tuple[Any, bool]:
        """(result, failed)."""
        try:
            return self._parsed.search(envelope.view()), False
        except (jmespath.exceptions.JMESPathError, TypeError, ValueError, ArithmeticError):
            return None, True


def optional_expression(text: str, where: str, key: str) -> Expression | None:
    return Expression(text, where, key) if text else None


def truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, empty string, list and object are false."""
    return value not in (False, None, "", [], {})


def glob(pattern: str) -> re.Pattern[str] | None:
    """A compiled fnmatch glob (case-sensitive, as identities and topics are); None for '*'."""
    return None if pattern == "*" else re.compile(fnmatch.translate(pattern))


TEMPLATE_FIELDS = ("topic", "sender", "kind", "room")


class Template:
    """A topic such as 'chat.{room}': only the fields in TEMPLATE_FIELDS, checked when the config loads."""

    def __init__(self, text: str, where: str, key: str) -> None:
        try:
            names = [name for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
            bad = [name for name in names if name not in TEMPLATE_FIELDS]
        except ValueError as exc:
            raise config_error(where, key, text, f"not a topic template ({exc})") from None
        if bad:
            expected = "a template using only " + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            raise config_error(where, key, text, expected)
        self.text = text
        self._plain = not names

    def render(self, message: DataMessage) -> str:
        if self._plain:
            return self.text
        m = message
        return self.text.format(topic=m.topic, sender=m.sender, kind=m.kind, room=m.room)


def field_path(text: str, where: str, key: str) -> tuple[str, ...]:
    """A dotted path into a JSON object ('message.body'), for fields a stage rewrites."""
    parts = tuple(text.split(".")) if text else ()
    if any(not part for part in parts):
        raise config_error(where, key, text, "a dotted path such as 'message.body'")
    return parts


def as_key(value: Any) -> str:
    """A JSON value as a group key or attribute value: strings as they are, the rest as compact JSON."""
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()
