"""A DataMessage as JSON, the form webhooks and dead-letter files carry (bridge process).

Every field of `framepool.processors.messages.DataMessage` under its own name, except the payload: a payload
that is valid UTF-8 travels as `payload` (a JSON string), any other as `payload_base64` (standard base64);
exactly one of the two is present. Text is the common case (chat, transcripts, JSON telemetry) and stays
readable; bytes survive unchanged.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from framepool.processors.messages import DataMessage


def event_to_json(message: DataMessage) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(message)
    payload = message.payload
    del data["payload"]
    try:
        data["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        data["payload_base64"] = base64.b64encode(payload).decode("ascii")
    return data


def event_from_json(data: dict[str, Any]) -> DataMessage:
    """The inverse of `event_to_json` (receivers and tests)."""
    fields = dict(data)
    if "payload_base64" in fields:
        fields["payload"] = base64.b64decode(fields.pop("payload_base64"))
    else:
        fields["payload"] = str(fields.get("payload", "")).encode("utf-8")
    return msgspec.convert(fields, DataMessage)
