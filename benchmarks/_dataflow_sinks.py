"""The sinks of the data-flow benchmark, seen from the harness (harness process): real Redis and PostgreSQL
servers on loopback (started as the test fixtures start them, `tests.support.redis_server` and
`postgres_server`), the sink specs framepool is configured with, and what arrived at each sink.

Commit time. Redis: an XADD entry's id is `<server ms>-<n>`, taken when the server executed the command
(appendfsync always: before it answered). PostgreSQL: the benchmark creates the sink's table itself with one
more column, `committed_at timestamptz DEFAULT clock_timestamp()` (the sink's INSERT names its columns, so the
default fills it as each row is written, inside the batch's transaction, just before its commit). Intake →
commit latency is that time minus the event's `received_us` (the supervisor's wall clock when the SDK
delivered it): one machine, one clock, millisecond resolution for Redis.
"""

from __future__ import annotations

import contextlib

import asyncpg
import redis.asyncio as aioredis

from framepool.bridge.postgres_sink import TABLE_DDL
from framepool.bridge.registry import SinkSpec
from tests.support import postgres_server as postgres_server_module
from tests.support import redis_server as redis_server_module
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer
from tests.support.servers import free_port, postgres_bindir, redis_server_binary

STREAM = "bench:telemetry"
TABLE = "bench_events"


def missing(kind: str) -> str | None:
    """Why the sink `kind` cannot run here (its server binary is missing), or None."""
    if kind == "redis" and redis_server_binary() is None:
        return "redis-server not found (make servers installs Debian's redis-server)"
    if kind == "postgres" and postgres_bindir() is None:
        return "PostgreSQL's initdb/postgres not found (make servers installs Debian's postgresql)"
    return None


def redis_running() -> contextlib.AbstractContextManager[RedisServer]:
    return redis_server_module.redis_running("framepool-bench-redis-")


def postgres_running() -> contextlib.AbstractContextManager[PostgresServer]:
    return postgres_server_module.postgres_running("framepool-bench-pg-")


def redis_sink(url: str) -> SinkSpec:
    return SinkSpec(name="redis", type="redis", options={"url": url, "key": STREAM, "maxlen": None})


async def postgres_sink(dsn: str) -> SinkSpec:
    """The sink, its table created here first with the `committed_at` column (see the module docstring)."""
    ddl = TABLE_DDL.format(table=TABLE, index=f"{TABLE}_order")
    ddl = ddl.replace("payload bytea NOT NULL", "payload bytea NOT NULL,\n    committed_at timestamptz "
                      "NOT NULL DEFAULT clock_timestamp()")  # fmt: skip
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(ddl)
    finally:
        await connection.close()
    return SinkSpec(name="postgres", type="postgres", options={"dsn": dsn, "table": TABLE})


def down_sink() -> SinkSpec:
    """A webhook whose port nothing listens on: every delivery is refused and retried."""
    return SinkSpec(name="down", type="webhook", options={"url": f"http://127.0.0.1:{free_port()}/hook"})


async def redis_arrivals(url: str) -> dict[str, float]:
    """event id → intake-to-commit latency in ms, for every entry of the stream (first one per id)."""
    client = aioredis.from_url(url)
    found: dict[str, float] = {}
    try:
        start = "-"
        while True:
            entries = await client.xrange(STREAM, min=start, max="+", count=10_000)
            for entry_id, fields in entries:
                committed_ms = int(entry_id.split(b"-")[0])
                latency = committed_ms - int(fields[b"received_us"]) / 1000
                found.setdefault(fields[b"event_id"].decode(), latency)
            if len(entries) < 10_000:
                return found
            start = "(" + entries[-1][0].decode()
    finally:
        await client.aclose()


async def postgres_arrivals(dsn: str) -> dict[str, float]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            f"SELECT event_id::text AS id, "
            f"extract(epoch FROM committed_at) * 1000 - received_us / 1000.0 AS latency FROM {TABLE}"
        )
    finally:
        await connection.close()
    return {row["id"]: float(row["latency"]) for row in rows}
