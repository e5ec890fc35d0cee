"""The real bridge process delivering spools to the real Redis and PostgreSQL sinks (the registry builds
them from `[[sinks]]` specs as the daemon would), including a SIGKILL of the bridge mid-delivery: every
event arrives, PostgreSQL holds each exactly once, Redis each at least once in per-room order."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis

from framepool.bridge.process import BridgeStart
from framepool.bridge.redis_sink import message_from_entry
from framepool.bridge.registry import SinkSpec
from framepool.bridge.runner import DeliveryOptions
from framepool.bridgehost import BridgeHost
from framepool.ipc.spool import SpoolWriter, sink_spool
from framepool.processors.messages import DataMessage, new_event_id
from tests.support.postgres_server import PostgresServer, postgres_server
from tests.support.redis_server import RedisServer, redis_server
from tests.support.timeouts import EVENT, PROCESS

pytestmark = pytest.mark.process
__all__ = ["postgres_server", "redis_server"]  # fixtures, one server each for this module

EVENTS = 2000
FAST = DeliveryOptions(batch_max=100, batch_ms=5, retry_initial=0.05, retry_max=0.4)


def event(seq: int) -> DataMessage:
    room = f"room-{seq % 3}"
    return DataMessage(
        event_id=new_event_id(), seq=seq, job="J", room=room, kind="packet", topic="t", sender="alice",
        sender_kind="standard", received_us=seq, payload=b"\xff\x00" + str(seq).encode(),
    )  # fmt: skip


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[dict[str, SpoolWriter]]:
    spools = {name: SpoolWriter(sink_spool(tmp_path, name), max_bytes=64 << 20) for name in ("redis", "pg")}
    yield spools
    for writer in spools.values():
        writer.close()


async def test_the_bridge_delivers_to_redis_and_postgres_across_a_sigkill(
    tmp_path: Path,
    writers: dict[str, SpoolWriter],
    redis_server: RedisServer,
    postgres_server: PostgresServer,
) -> None:
    sinks = [
        SinkSpec(name="redis", type="redis", options={"url": redis_server.url, "key": "fp:{room}"}),
        SinkSpec(name="pg", type="postgres", options={"dsn": postgres_server.dsn, "table": "bridged"}),
    ]
    start = BridgeStart(
        spool_dir=str(tmp_path), sinks=sinks, delivery=FAST, stop_timeout=5.0, parent_pid=os.getpid()
    )
    host = BridgeHost(start, restart_backoff=0.05, restart_backoff_max=0.2)
    sent = [event(seq) for seq in range(1, EVENTS + 1)]
    host.start()
    try:
        await asyncio.wait_for(host.ready.wait(), PROCESS)
        for message in sent[: EVENTS // 2]:
            assert all(writer.append(message) for writer in writers.values())
        pid = host.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # mid-delivery: its checkpoints lag what it delivered
        for message in sent[EVENTS // 2 :]:
            assert all(writer.append(message) for writer in writers.values())
        rows = await _until_rows(postgres_server.dsn, EVENTS)
        entries = await _redis_entries(redis_server.url, EVENTS)
    finally:
        await host.stop()
    assert host.restarts >= 1
    assert len(rows) == EVENTS and {str(r["event_id"]) for r in rows} == {m.event_id for m in sent}
    first_seen: dict[str, list[int]] = {}
    seen: set[str] = set()
    for message in entries:
        if message.event_id not in seen:
            seen.add(message.event_id)
            first_seen.setdefault(message.room, []).append(message.seq)
    assert seen == {m.event_id for m in sent}
    assert all(seqs == sorted(seqs) for seqs in first_seen.values())  # per-room order kept


async def _until_rows(dsn: str, count: int, table: str = "bridged") -> list[asyncpg.Record]:
    async def poll() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(dsn)
        try:
            while True:
                try:
                    rows: list[asyncpg.Record] = await connection.fetch(f"SELECT event_id FROM {table}")
                except asyncpg.UndefinedTableError:
                    rows = []
                if len(rows) >= count:
                    return rows
                await asyncio.sleep(0.05)  # PostgreSQL has no change notification for a plain table
        finally:
            await connection.close()

    return await asyncio.wait_for(poll(), EVENT * 4)


async def _redis_entries(url: str, count: int) -> list[DataMessage]:
    client = redis.Redis.from_url(url)
    try:

        async def poll() -> list[DataMessage]:
            while True:
                messages = []
                for room in ("room-0", "room-1", "room-2"):
                    for _id, fields in await client.xrange(f"fp:{room}"):
                        messages.append(message_from_entry(fields))
                if len({m.event_id for m in messages}) >= count:
                    return messages
                await asyncio.sleep(0.05)  # XREAD could block, but three keys and a count are simpler

        return await asyncio.wait_for(poll(), EVENT * 4)
    finally:
        await client.aclose()


async def test_the_bridge_killed_at_20_random_points_leaves_every_event_once_in_postgres(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """The issue's exactly-once check: the real bridge process, SIGKILLed 20 times at random points while
    events keep being spooled (each time restarted by the host, delivering again from its last checkpoint):
    the table holds every event exactly once (row count = events sent, no duplicates, no strangers)."""
    rng = random.Random(20261203)
    writer = SpoolWriter(sink_spool(tmp_path, "pg"), max_bytes=64 << 20)
    sink = SinkSpec(name="pg", type="postgres", options={"dsn": postgres_server.dsn, "table": "killed"})
    start = BridgeStart(
        spool_dir=str(tmp_path), sinks=[sink], delivery=FAST, stop_timeout=5.0, parent_pid=os.getpid()
    )
    host = BridgeHost(start, restart_backoff=0.01, restart_backoff_max=0.05)
    sent: list[DataMessage] = []
    host.start()
    try:
        for _kill in range(20):
            host.ready.clear()
            await asyncio.wait_for(host.ready.wait(), PROCESS)
            for _ in range(100):
                sent.append(event(len(sent) + 1))
                assert writer.append(sent[-1])
            await asyncio.sleep(rng.uniform(0.0, 0.15))  # a random point of its delivery
            pid = host.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        rows = await _until_rows(postgres_server.dsn, len(sent), table="killed")
    finally:
        await host.stop()
        writer.close()
    assert host.exit_codes.count(-signal.SIGKILL) == 20
    assert len(rows) == len(sent) and {str(r["event_id"]) for r in rows} == {m.event_id for m in sent}
