"""A job's data-plane intake: every data event the SDK delivers for the room becomes one `DataMessage`
(supervisor process).

What arrives (the `livekit` 1.2 SDK's events): data packets, reliable and lossy, with topic and sender
(`data_received`); text and byte streams on any topic; RPC calls on the methods the job declares; DTMF
(`sip_dtmf_received`); changes of a participant's attributes or metadata. Each becomes a `DataMessage`
(framepool.processors.messages) with a UUIDv7 event id and the job's next sequence number, handed to the
job's consumer, a plain callable that must not block (routing, processors, the spool of a bridge).

Streams on every topic. The SDK drops a stream whose topic has no handler, and its handlers are per topic,
so the intake puts a catch-all in the SDK's handler tables (`Room._text_stream_handlers`, a private
attribute of livekit 1.2: tests/integration/test_intake.py fails if a release renames it). A handler the
entrypoint registers itself for a topic still takes precedence.

Bounds. The SDK's callbacks are synchronous and its queues unbounded, so the intake bounds what a
participant can make it do: each sender has a token bucket (`data_sender_rate` messages per second, twice
that as a burst; the rest are dropped and counted against that sender, never another); a stream is read
only up to `data_stream_max_bytes` (the same cap is passed to the SDK as
`DataStreamOptions.max_payload_byte_length`, so the FFI ends an oversize stream with an error before
buffering it; a stream over the cap is counted and its reader closed), and at most `data_streams_open`
streams of a job are read at once (more are refused and counted). An RPC call the consumer cannot take
(rate-limited, or the consumer said no) is answered at once with `SATURATED` (a framepool error code below
LiveKit's reserved 1001-1999) instead of waiting past the caller's deadline.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from livekit import rtc
from livekit.protocol import models

from framepool.processors.messages import DataKind, DataMessage, SenderKind, new_event_id
from framepool.ratelimit import TokenBucket
from framepool.settings import Settings
from framepool.tasks import TaskSet

log = logging.getLogger("framepool.agent.intake")

SATURATED = 429  # the RPC error code of a call framepool could not take (like HTTP's Too Many Requests)
_SENDER_KINDS: dict[int, SenderKind] = {
    value: name.lower()  # type: ignore[misc]
    for name, value in models.ParticipantInfo.Kind.items()
    if name.lower() in ("standard", "ingress", "egress", "sip", "agent", "connector")
}

Consumer = Callable[[DataMessage], bool | None]  # False: not taken (full); None or True: taken


class IntakeStats(msgspec.Struct, kw_only=True):
    """A job's intake counters (cumulative)."""

    received: dict[str, int]  # messages handed to the consumer, per kind
    rate_limited: dict[str, int]  # dropped by a sender's token bucket, per sender identity
    refused: int  # the consumer did not take them
    streams_over_cap: int  # streams longer than data_stream_max_bytes (ended with an error, not delivered)
    streams_refused: int  # streams not read because data_streams_open were being read
    stream_errors: int  # streams that ended with an error (aborted by the sender, disconnect)
    rpc_saturated: int  # RPC calls answered with SATURATED


class _AllTopics(dict[str, Any]):
    """An SDK stream-handler table that answers every topic: registered handlers first, then `fallback`."""

    def __init__(self, existing: dict[str, Any], fallback: Callable[..., None]) -> None:
        super().__init__(existing)
        self.fallback = fallback

    def get(self, topic: str, default: Any = None) -> Any:
        return super().get(topic, self.fallback)


class DataIntake:
    """One job's intake (see the module docstring); `start` after the room is connected."""

    def __init__(
        self,
        room: rtc.Room,
        job_id: str,
        consumer: Consumer,
        settings: Settings,
        rpc_methods: Iterable[str] = (),
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.room = room
        self.job_id = job_id
        self.consumer = consumer
        self.settings = settings
        self.rpc_methods = list(dict.fromkeys(rpc_methods))
        self._clock = clock
        self._seq = 0
        self._buckets: dict[str, TokenBucket] = {}
        self._received: Counter[str] = Counter()
        self._rate_limited: Counter[str] = Counter()
        self._refused = self._over_cap = self._streams_refused = self._stream_errors = self._rpc_saturated = 0
        self._streams = TaskSet(f"data streams of job {job_id}", log)
        self._handlers: list[tuple[rtc.room.EventTypes, Callable[..., None]]] = []

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        room = self.room
        handlers: list[tuple[rtc.room.EventTypes, Callable[..., None]]] = [
            ("data_received", self._on_packet),
            ("sip_dtmf_received", self._on_dtmf),
            ("participant_attributes_changed", self._on_attributes),
            ("participant_metadata_changed", self._on_metadata),
            ("participant_disconnected", self._on_left),
        ]
        for event, handler in handlers:
            room.on(event, handler)
        self._handlers = handlers
        room._text_stream_handlers = _AllTopics(room._text_stream_handlers, self._on_text_stream)
        room._byte_stream_handlers = _AllTopics(room._byte_stream_handlers, self._on_byte_stream)
        for method in self.rpc_methods:
            room.local_participant.register_rpc_method(method, self._on_rpc)

    async def aclose(self) -> None:
        """Stop taking events; streams being read are abandoned (their readers closed)."""
        for event, handler in self._handlers:
            self.room.off(event, handler)
        self._handlers = []
        for table in (self.room._text_stream_handlers, self.room._byte_stream_handlers):
            if isinstance(table, _AllTopics):
                table.fallback = _ignore_stream
        if self.room.isconnected():
            for method in self.rpc_methods:
                self.room.local_participant.unregister_rpc_method(method)
        await self._streams.aclose()

    def next_seq(self) -> int:
        """The job's next sequence number (what the data-flow stages derive takes its place in the order)."""
        self._seq += 1
        return self._seq

    def stats(self) -> IntakeStats:
        return IntakeStats(
            received=dict(self._received),
            rate_limited=dict(self._rate_limited),
            refused=self._refused,
            streams_over_cap=self._over_cap,
            streams_refused=self._streams_refused,
            stream_errors=self._stream_errors,
            rpc_saturated=self._rpc_saturated,
        )

    # -- turning events into messages -----------------------------------------------------------------

    def _admit(self, sender: str) -> bool:
        """The sender's token bucket allows one more message (the server's own events always pass)."""
        if not sender:
            return True
        bucket = self._buckets.get(sender)
        if bucket is None:
            bucket = self._buckets[sender] = TokenBucket(self.settings.data_sender_rate)
        if bucket.allow():
            return True
        self._rate_limited[sender] += 1
        return False

    def _deliver(
        self,
        kind: DataKind,
        participant: rtc.Participant | None,
        payload: bytes,
        topic: str = "",
        reliable: bool = True,
        attributes: dict[str, str] | None = None,
    ) -> DataMessage | None:
        """Make the message and hand it over; None if the consumer did not take it (counted)."""
        now = self._clock()
        message = DataMessage(
            event_id=new_event_id(now),
            seq=self.next_seq(),
            job=self.job_id,
            room=self.room.name,
            kind=kind,
            topic=topic,
            sender=participant.identity if participant is not None else "",
            sender_kind=sender_kind(participant),
            received_us=now // 1000,
            reliable=reliable,
            attributes=dict(participant.attributes)
            if attributes is None and participant
            else attributes or {},
            payload=payload,
        )
        try:
            taken = self.consumer(message) is not False
        except Exception:
            log.exception("the data consumer of job %s failed on a %s message", self.job_id, kind)
            taken = False
        if taken:
            self._received[kind] += 1
            return message
        self._refused += 1
        return None

    def _on_packet(self, packet: rtc.DataPacket) -> None:
        sender = packet.participant.identity if packet.participant is not None else ""
        if self._admit(sender):
            reliable = packet.kind == rtc.DataPacketKind.KIND_RELIABLE
            self._deliver("packet", packet.participant, packet.data, packet.topic or "", reliable)

    def _on_dtmf(self, dtmf: rtc.SipDTMF) -> None:
        sender = dtmf.participant.identity if dtmf.participant is not None else ""
        if self._admit(sender):
            self._deliver("dtmf", dtmf.participant, dtmf.digit.encode())

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if participant is not self.room.local_participant and self._admit(participant.identity):
            self._deliver("attributes", participant, json.dumps(changed, sort_keys=True).encode())

    def _on_metadata(self, participant: rtc.Participant, old: str, new: str) -> None:
        if participant is not self.room.local_participant and self._admit(participant.identity):
            self._deliver("metadata", participant, new.encode())

    def _on_left(self, participant: rtc.RemoteParticipant) -> None:
        self._buckets.pop(participant.identity, None)  # a returning participant starts with a full bucket

    async def _on_rpc(self, data: rtc.RpcInvocationData) -> str:
        participant = self.room.remote_participants.get(data.caller_identity)
        taken = self._admit(data.caller_identity) and self._deliver(
            "rpc", participant, data.payload.encode(), data.method
        )
        if not taken:
            self._rpc_saturated += 1
            raise rtc.RpcError(SATURATED, "framepool is saturated; retry later")
        return json.dumps({"accepted": True, "event_id": taken.event_id})

    # -- streams ----------------------------------------------------------------------------------------

    def _on_text_stream(self, reader: rtc.TextStreamReader, identity: str) -> None:
        self._open_stream("text", reader, identity)

    def _on_byte_stream(self, reader: rtc.ByteStreamReader, identity: str) -> None:
        self._open_stream("bytes", reader, identity)

    def _open_stream(self, kind: DataKind, reader: Any, identity: str) -> None:
        if len(self._streams) >= self.settings.data_streams_open or not self._admit(identity):
            if len(self._streams) >= self.settings.data_streams_open:
                self._streams_refused += 1
            reader.close()
            return
        self._streams.spawn(self._read_stream(kind, reader, identity))

    async def _read_stream(self, kind: DataKind, reader: Any, identity: str) -> None:
        cap = self.settings.data_stream_max_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in reader:
                data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
                size += len(data)
                if size > cap:
                    reader.close()
                    self._refuse_oversize(kind, identity, reader.info.topic)
                    return
                chunks.append(data)
        except rtc.StreamError as exc:  # the FFI ended it: over its cap (the declared size says), or aborted
            if (reader.info.size or 0) > cap:
                self._refuse_oversize(kind, identity, reader.info.topic)
            else:
                self._stream_errors += 1
                log.info(
                    "job %s: a %s stream from %s ended with an error: %s", self.job_id, kind, identity, exc
                )
            return
        info = reader.info
        participant = self.room.remote_participants.get(identity)
        self._deliver(kind, participant, b"".join(chunks), info.topic, attributes=dict(info.attributes or {}))

    def _refuse_oversize(self, kind: DataKind, identity: str, topic: str) -> None:
        self._over_cap += 1
        log.warning(
            "job %s: a %s stream from %s on topic %r is over data_stream_max_bytes (%d); dropped",
            self.job_id, kind, identity, topic, self.settings.data_stream_max_bytes,
        )  # fmt: skip


def sender_kind(participant: rtc.Participant | None) -> SenderKind:
    """The participant's kind by name (`framepool.processors.messages.SenderKind`)."""
    if participant is None:
        return "unknown"
    return _SENDER_KINDS.get(participant.kind, "unknown")


def _attributes_of(participant: rtc.Participant | None) -> dict[str, str]:
    return dict(participant.attributes) if participant is not None else {}


def _ignore_stream(reader: Any, identity: str) -> None:
    reader.close()
