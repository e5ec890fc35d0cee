"""One thing a participant sent to a room, as framepool received it (every process: the supervisor makes it,
data processors and bridges read it).

The SDK delivers a room's data plane to the supervisor in seven shapes: data packets (reliable or lossy,
with a topic), text streams, byte streams, RPC calls, DTMF digits (`sip_dtmf_received`), and changes of a
participant's attributes or metadata. The intake turns each into one `DataMessage`, so everything after it
(routing, transforms, aggregation, moderation, data processors in the workers, bridges to external
systems) handles one type.

Identity and order. `event_id` is a UUIDv7 (RFC 9562): unique, time-ordered, made once when the message is
received; it is the idempotency key of every bridge (the webhook's `webhook-id`, the PostgreSQL primary
key, the field Redis consumers dedupe on), so a message delivered twice is recognisably the same one.
`seq` counts a job's messages from 1 in the order the supervisor received them: the room's order, which
bridges keep per room.

Payload. Always bytes, as sent: a data packet's or byte stream's bytes, a text stream's or RPC payload's
UTF-8, a DTMF digit ("0"-"9", "*", "#", "A"-"D"), or, for `attributes` and `metadata`, the JSON object of
what changed (`{"key": "new value"}`, a removed attribute as `""`) or the new metadata string.
`json()` decodes a JSON payload, or raises msgspec.DecodeError.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Literal

import msgspec

DataKind = Literal["packet", "text", "bytes", "rpc", "dtmf", "attributes", "metadata"]
DATA_KINDS: tuple[DataKind, ...] = ("packet", "text", "bytes", "rpc", "dtmf", "attributes", "metadata")
# The participant kinds of LiveKit's ParticipantInfo.Kind, by name; "unknown" for a kind this build does
# not know (a newer server).
SenderKind = Literal["standard", "ingress", "egress", "sip", "agent", "connector", "unknown"]


class DataMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One received data-plane event of one job's room (see the module docstring)."""

    event_id: str  # UUIDv7, the idempotency key of every bridge
    seq: int  # per job, from 1, in the order received: the room's order
    job: str  # the LiveKit job id ("" offline or in tests)
    room: str
    kind: DataKind
    topic: str  # packet and stream topic, RPC method; "" for dtmf, attributes, metadata
    sender: str  # the sending participant's identity; "" when the server sent it
    sender_kind: SenderKind
    received_us: int  # supervisor wall clock when the SDK delivered it, µs since the Unix epoch
    reliable: bool = True  # packets: sent reliable (in order, retransmitted) or lossy
    attributes: dict[str, str] = {}  # stream attributes (text/byte streams); the sender's, for the rest
    payload: bytes = b""

    def text(self) -> str:
        """The payload as UTF-8 text (invalid bytes replaced)."""
        return self.payload.decode("utf-8", "replace")

    def json(self) -> Any:
        """The payload decoded as one JSON value; msgspec.DecodeError if it is not JSON."""
        return msgspec.json.decode(self.payload)


def new_event_id(now_ns: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits; sorts by creation time."""
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))
