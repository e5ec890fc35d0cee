"""The PostgreSQL sink: every event becomes one row, keyed by its `event_id`, inserted once however often it
is delivered (bridge process).

What lands where. One table (`framepool_events` by default), created on `open()` unless `create_table =
false`, with a column per `DataMessage` field (`TABLE_DDL`): `event_id uuid PRIMARY KEY`, the strings as
text, `seq` and `received_us` as bigint (plus `received_at`, a timestamptz computed from it), `attributes`
as jsonb, `payload` as bytea; an index on (room, job, seq) reads a room back in order.

Exactly-once effect. A batch is one `INSERT ... SELECT FROM unnest(...) ON CONFLICT (event_id) DO NOTHING`
in one transaction: `deliver` returns once it is committed; if the commit's outcome is unknown (the
connection died) it raises `SinkUnavailable`, the bridge delivers the batch again, and the rows that made
it are skipped. At-least-once delivery thus leaves each event exactly once in the table.

Errors. No connection, a timeout, a server shutting down or out of resources, and every error that is not
about the data (a missing table, a wrong column type) raise `SinkUnavailable`: retried, never dropped, and
logged by the bridge until an operator fixes it. Events PostgreSQL will never take are `SinkRejected`, the
rest of the batch committed: refused before sending (an event id that is not a UUID, a NUL character or a
lone surrogate in a text field or in attributes, which text and jsonb cannot hold) or by the server (a data
error or a constraint other than the duplicate, SQLSTATE classes 22 and 23: the batch is then inserted row
by row under savepoints to find which).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import asyncpg
import msgspec

from framepool.bridge.sink import SinkRejected, SinkUnavailable
from framepool.processors.messages import DataMessage

TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?")
INT64 = range(-(2**63), 2**63)
DATA_CLASSES = ("22", "23")  # SQLSTATE classes: data exception, integrity constraint violation

Seconds = Annotated[float, msgspec.Meta(gt=0)]

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    event_id uuid PRIMARY KEY,
    seq bigint NOT NULL,
    job text NOT NULL,
    room text NOT NULL,
    kind text NOT NULL,
    topic text NOT NULL,
    sender text NOT NULL,
    sender_kind text NOT NULL,
    received_us bigint NOT NULL,
    received_at timestamptz GENERATED ALWAYS AS (to_timestamp(received_us / 1000000.0)) STORED,
    reliable boolean NOT NULL,
    attributes jsonb NOT NULL,
    payload bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS {index} ON {table} (room, job, seq);
"""

COLUMNS = (
    "event_id, seq, job, room, kind, topic, sender, sender_kind, received_us, reliable, attributes, payload"
)
INSERT = """
INSERT INTO {table} ({columns})
SELECT e, s, j, r, k, t, sn, sk, ru, rl, a::jsonb, p
FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::bigint[], $10::boolean[], $11::text[], $12::bytea[])
     AS batch(e, s, j, r, k, t, sn, sk, ru, rl, a, p)
ON CONFLICT (event_id) DO NOTHING
"""


class PostgresConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A PostgreSQL sink's settings (`[bridges.<name>]` with `type = "postgres"`)."""

    dsn: str = "postgresql://localhost/postgres"  # libpq URI: user, password, host, port, db, sslmode
    table: str = "framepool_events"  # lower-case, optionally schema-qualified ("audit.room_events")
    create_table: bool = True  # CREATE TABLE / INDEX IF NOT EXISTS on open(); false: it must exist
    connect_timeout: Seconds = 10.0
    timeout: Seconds = 30.0  # per statement; a batch that takes longer is retried

    def __post_init__(self) -> None:
        if not TABLE_NAME.fullmatch(self.table):
            raise ValueError(
                f"table {self.table!r}: expected [schema.]name in lower case, letters, digits, _"
            )


def refusal(msg: DataMessage) -> str | None:
    """Why PostgreSQL can never store `msg` as a row, or None if it can."""
    try:
        uuid.UUID(msg.event_id)
    except ValueError:
        return f"event_id {msg.event_id!r} is not a UUID"
    if msg.seq not in INT64 or msg.received_us not in INT64:
        return "seq or received_us out of bigint range"
    texts = [msg.job, msg.room, msg.kind, msg.topic, msg.sender, msg.sender_kind]
    texts += [*msg.attributes.keys(), *msg.attributes.values()]
    for text in texts:
        if "\x00" in text:
            return "a NUL character in a text field or attribute (text and jsonb cannot hold it)"
        try:
            text.encode()
        except UnicodeEncodeError:
            return "a lone surrogate in a text field or attribute (not UTF-8)"
    return None


def columns(batch: Sequence[DataMessage]) -> list[list[Any]]:
    """The INSERT's twelve arrays, one per column, in COLUMNS order."""
    return [
        [m.event_id for m in batch],
        [m.seq for m in batch],
        [m.job for m in batch],
        [m.room for m in batch],
        [m.kind for m in batch],
        [m.topic for m in batch],
        [m.sender for m in batch],
        [m.sender_kind for m in batch],
        [m.received_us for m in batch],
        [m.reliable for m in batch],
        [msgspec.json.encode(m.attributes).decode() for m in batch],
        [m.payload for m in batch],
    ]


def _is_data_error(exc: BaseException) -> bool:
    """The events are at fault (never the connection): SQLSTATE class 22/23, or an argument asyncpg could
    not encode."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate)[:2] in DATA_CLASSES
    return isinstance(exc, asyncpg.DataError)


class PostgresSink:
    """Delivers batches to a PostgreSQL table (see the module docstring)."""

    Config: ClassVar[type[msgspec.Struct]] = PostgresConfig

    def __init__(self, name: str, config: PostgresConfig) -> None:
        self.name = name
        self.config = config
        self._conn: Any = None  # asyncpg.Connection: one, reopened after a failure
        self._insert = INSERT.format(table=config.table, columns=COLUMNS)

    async def open(self) -> None:
        """Connect and, unless `create_table = false`, create the table and its index."""
        conn = await self._connection()
        if self.config.create_table:
            index = self.config.table.rpartition(".")[2] + "_room_job_seq"
            ddl = TABLE_DDL.format(table=self.config.table, index=index)
            await self._unavailable_on_failure(conn.execute(ddl))

    async def deliver(self, batch: Sequence[DataMessage]) -> None:
        """Insert the batch in one transaction, skipping event ids already stored; returns once committed."""
        reasons = {msg.event_id: reason for msg in batch if (reason := refusal(msg)) is not None}
        rows = [msg for msg in batch if msg.event_id not in reasons]
        refused = [msg for msg in batch if msg.event_id in reasons]
        if rows:
            conn = await self._connection()
            try:
                await self._unavailable_on_failure(self._insert_batch(conn, rows))
            except _DataRefused:
                try:
                    refused += await self._unavailable_on_failure(self._insert_each(conn, rows))
                except _DataRefused:  # a deferred constraint failed the commit: no single row to blame
                    refused += rows
        if refused:
            why = sorted({reasons.get(msg.event_id, "refused by the server") for msg in refused})
            raise SinkRejected(f"postgres {self.name}: {len(refused)} events: {'; '.join(why)}", refused)

    async def _insert_batch(self, conn: Any, rows: Sequence[DataMessage]) -> None:
        try:
            async with conn.transaction():
                await conn.execute(self._insert, *columns(rows))
        except Exception as exc:
            if _is_data_error(exc):
                raise _DataRefused from exc
            raise

    async def _insert_each(self, conn: Any, rows: Sequence[DataMessage]) -> list[DataMessage]:
        """Row by row under savepoints in one transaction: the good rows commit, the refused are returned."""
        refused = []
        async with conn.transaction():
            for msg in rows:
                try:
                    async with conn.transaction():  # a savepoint
                        await conn.execute(self._insert, *columns([msg]))
                except Exception as exc:
                    if not _is_data_error(exc):
                        raise
                    refused.append(msg)
        return refused

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            connecting = asyncpg.connect(
                self.config.dsn, timeout=self.config.connect_timeout, command_timeout=self.config.timeout
            )
            self._conn = await self._unavailable_on_failure(connecting)
        return self._conn

    async def _unavailable_on_failure(self, work: Any) -> Any:
        """Await `work`; any failure that is not the events' fault drops the connection and becomes
        SinkUnavailable (the next call reconnects)."""
        try:
            return await work
        except _DataRefused:
            raise
        # InternalClientError: asyncpg's protocol state after the server vanished mid-operation (seen when
        # the server is SIGKILLed between two batches): the connection is unusable, the events not at fault.
        except (
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
        ) as exc:
            if _is_data_error(exc):
                raise _DataRefused from exc  # row by row, a single bad event
            if self._conn is not None:
                self._conn.terminate()
                self._conn = None
            raise SinkUnavailable(f"postgres {self.name}: {exc!r}") from exc

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close(timeout=self.config.timeout)
            self._conn = None


class _DataRefused(Exception):
    """The batch failed because of an event in it (SQLSTATE class 22/23): find which, row by row."""
