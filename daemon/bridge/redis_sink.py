"""The Redis Streams sink: every event becomes one stream entry (XADD), in a stream named from a key template
(bridge process).

What lands where. A batch is one pipeline of `XADD <key> MAXLEN ~ <maxlen> * field value ...` commands on
one connection, so entries reach each stream in the batch's order, which is the room's order. The key comes
from the template (`framepool:{room}:{topic}` by default; placeholders: room, topic, kind, job, sender).
The fields are every `DataMessage` field: the strings as UTF-8, `seq` and `received_us` as decimal,
`reliable` as "1"/"0", `attributes` as a JSON object, `payload` as the raw bytes (Redis values are binary
safe). `message_from_entry` turns an entry back into the `DataMessage`.

At-least-once. `deliver` returns once Redis acknowledged every XADD of the batch; how durable that is
depends on the server (`appendonly yes` with `appendfsync always` survives a crash of Redis, the default
`everysec` may lose the last second). After a failure the bridge sends the same batch again, so an entry may
appear twice: consumers dedupe on the `event_id` field (docs/sinks.md shows a consumer that does, with
`SET ... NX`). Stream ids are Redis's, not framepool's: order within a room is `seq`.

Errors. No connection, a timeout, and replies that pass (LOADING, OOM, READONLY, MISCONF, ...) raise
`SinkUnavailable` and the bridge retries the whole batch; redis-py's own retries are off so that the
bridge's backoff is the only one. A reply that will never change (WRONGTYPE: the key holds something else;
ERR) rejects that event only (`SinkRejected` with those events), as does an event whose text cannot be
encoded as UTF-8.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Annotated, ClassVar

import msgspec
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from framepool.bridge.sink import SinkRejected, SinkUnavailable
from framepool.processors.messages import DataMessage

KEY_PLACEHOLDERS = ("room", "topic", "kind", "job", "sender")
# Error replies that mean "this command will never succeed as sent"; every other reply may pass.
PERMANENT_REPLIES = ("WRONGTYPE", "ERR")

Seconds = Annotated[float, msgspec.Meta(gt=0)]


class RedisStreamsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A Redis Streams sink's settings (`[bridges.<name>]` with `type = "redis"`)."""

    url: str = "redis://127.0.0.1:6379/0"  # redis:// or rediss:// (TLS), with user, password and db
    key: str = "framepool:{room}:{topic}"  # stream key template; placeholders: KEY_PLACEHOLDERS
    maxlen: Annotated[int, msgspec.Meta(ge=1)] | None = 100_000  # MAXLEN ~ per stream; None: never trim
    connect_timeout: Seconds = 5.0
    timeout: Seconds = 10.0  # per reply; a batch that waits longer is retried

    def __post_init__(self) -> None:
        for _, name, spec, conversion in string.Formatter().parse(self.key):
            if name is None:
                continue
            if name not in KEY_PLACEHOLDERS or spec or conversion:
                raise ValueError(
                    f"key template {self.key!r}: {{{name}}} is not one of {{{'}, {'.join(KEY_PLACEHOLDERS)}}}"
                )


def stream_key(template: str, msg: DataMessage) -> str:
    """The stream `msg` goes to under `template`."""
    return template.format_map(
        {"room": msg.room, "topic": msg.topic, "kind": msg.kind, "job": msg.job, "sender": msg.sender}
    )


def entry_fields(msg: DataMessage) -> dict[str, bytes]:
    """The stream entry of `msg` (UnicodeEncodeError if a string holds lone surrogates)."""
    return {
        "event_id": msg.event_id.encode(),
        "seq": b"%d" % msg.seq,
        "job": msg.job.encode(),
        "room": msg.room.encode(),
        "kind": msg.kind.encode(),
        "topic": msg.topic.encode(),
        "sender": msg.sender.encode(),
        "sender_kind": msg.sender_kind.encode(),
        "received_us": b"%d" % msg.received_us,
        "reliable": b"1" if msg.reliable else b"0",
        "attributes": msgspec.json.encode(msg.attributes),
        "payload": msg.payload,
    }


def message_from_entry(fields: Mapping[bytes, bytes]) -> DataMessage:
    """The `DataMessage` a stream entry holds (as XREAD / XRANGE return it, undecoded);
    msgspec.ValidationError if the entry is not one this sink wrote."""
    text = {name: fields[name.encode()].decode() for name in ("event_id", "job", "room", "kind", "topic")}
    text |= {name: fields[name.encode()].decode() for name in ("sender", "sender_kind")}
    return msgspec.convert(
        {
            **text,
            "seq": int(fields[b"seq"]),
            "received_us": int(fields[b"received_us"]),
            "reliable": fields[b"reliable"] == b"1",
            "attributes": msgspec.json.decode(fields[b"attributes"]),
            "payload": fields[b"payload"],
        },
        DataMessage,
    )


class RedisStreamsSink:
    """Delivers batches to Redis Streams (see the module docstring)."""

    Config: ClassVar[type[msgspec.Struct]] = RedisStreamsConfig

    def __init__(self, name: str, config: RedisStreamsConfig) -> None:
        self.name = name
        self.config = config
        self._client: redis.Redis | None = None

    async def open(self) -> None:
        """Connect and PING; SinkUnavailable if Redis does not answer."""
        self._client = redis.Redis.from_url(
            self.config.url,
            socket_connect_timeout=self.config.connect_timeout,
            socket_timeout=self.config.timeout,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise SinkUnavailable(f"redis {self.name}: {exc!r}") from exc

    async def deliver(self, batch: Sequence[DataMessage]) -> None:
        """One pipeline of XADDs, one per event, in order; returns when Redis acknowledged them all."""
        if self._client is None:
            raise RuntimeError(f"redis sink {self.name} delivered to before open()")
        sent: list[DataMessage] = []
        rejected: list[DataMessage] = []
        pipe = self._client.pipeline(transaction=False)
        for msg in batch:
            try:
                key, fields = stream_key(self.config.key, msg).encode(), entry_fields(msg)
            except UnicodeEncodeError:
                rejected.append(msg)
                continue
            if self.config.maxlen is None:
                pipe.xadd(key, fields)  # type: ignore[arg-type]  # redis-py types fields as str-keyed
            else:
                pipe.xadd(key, fields, maxlen=self.config.maxlen, approximate=True)  # type: ignore[arg-type]
            sent.append(msg)
        replies = await self._execute(pipe) if sent else []
        self._settle(sent, replies, rejected)

    async def _execute(self, pipe: redis.client.Pipeline) -> list[object]:
        try:
            replies: list[object] = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:  # connection refused or lost, timeout, LOADING
            raise SinkUnavailable(f"redis {self.name}: {exc!r}") from exc
        return replies

    def _settle(self, sent: list[DataMessage], replies: list[object], rejected: list[DataMessage]) -> None:
        """Raise for what did not land: SinkUnavailable if any reply may pass later (the whole batch comes
        again), else SinkRejected for the events Redis or the encoding refused for good."""
        transient = [r for r in replies if isinstance(r, ResponseError) and not _permanent(r)]
        if transient:
            raise SinkUnavailable(f"redis {self.name}: {transient[0]} ({len(transient)} of {len(sent)})")
        rejected += [
            msg for msg, reply in zip(sent, replies, strict=True) if isinstance(reply, ResponseError)
        ]
        if rejected:
            raise SinkRejected(f"redis {self.name}: {len(rejected)} events refused", rejected)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _permanent(reply: ResponseError) -> bool:
    return str(reply).startswith(PERMANENT_REPLIES)
