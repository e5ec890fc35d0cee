"""The Redis Streams sink against a real redis-server on loopback (test process; tests/support/redis_server.py
starts one per module, installed by `make servers`): every field survives the round trip through Redis,
a Redis killed with SIGKILL mid-run and restarted still ends up holding every event at least once in each
room's order, and refused or unreachable writes raise what the bridge acts on.

The bridge process (retries with backoff, spool, checkpoints) has its own tests; here a minimal retry loop
does what the bridge does on SinkUnavailable: deliver the same batch again.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from hypothesis import given

from framepool.bridge.redis_sink import RedisStreamsConfig, RedisStreamsSink, message_from_entry
from framepool.bridge.sink import SinkRejected, SinkUnavailable
from framepool.processors.messages import DataMessage
from tests.support import timeouts
from tests.support.redis_server import RedisServer, redis_server
from tests.support.servers import free_port
from tests.support.sink_data import fuzz, messages, room_traffic

__all__ = ["redis_server"]  # the module-scoped fixture
pytestmark = pytest.mark.process

SINKS_DOC = (Path(__file__).resolve().parents[2] / "docs" / "sinks.md").read_text()
RETRY_PAUSE = 0.02  # the test's stand-in for the bridge's backoff


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_server.url)
    yield conn
    await conn.aclose()


async def read_stream(conn: redis.Redis, key: str) -> list[DataMessage]:
    return [message_from_entry(fields) for _, fields in await conn.xrange(key)]


async def deliver_until_acknowledged(sink: RedisStreamsSink, batch: Sequence[DataMessage]) -> int:
    """The bridge's loop, minimal: the same batch until it is acknowledged; how many attempts failed."""
    failed = 0
    while True:
        try:
            await sink.deliver(batch)
            return failed
        except SinkUnavailable:
            failed += 1
            await asyncio.sleep(RETRY_PAUSE)


@pytest.fixture(scope="module")
def loop_runner() -> Iterator[asyncio.Runner]:
    """One event loop for the hypothesis round trip (a sync test, one sink for all its examples)."""
    with asyncio.Runner() as runner:
        yield runner


@fuzz(60)
@given(msg=messages())
def test_every_field_round_trips_through_a_stream(
    redis_server: RedisServer, loop_runner: asyncio.Runner, msg: DataMessage
) -> None:
    async def round_trip() -> list[DataMessage]:
        sink = RedisStreamsSink("roundtrip", RedisStreamsConfig(url=redis_server.url, key="rt:{room}"))
        conn = redis.Redis.from_url(redis_server.url)
        try:
            await sink.open()
            await conn.delete(f"rt:{msg.room}")
            await sink.deliver([msg])
            return await read_stream(conn, f"rt:{msg.room}")
        finally:
            await sink.close()
            await conn.aclose()

    assert loop_runner.run(round_trip()) == [msg]


async def test_a_redis_killed_mid_run_holds_every_event_at_least_once_in_room_order(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    """SIGKILL while batches are in flight, restart on the same port and append-only file: every event
    the sink was asked to deliver is in its room's stream, duplicates only of a batch in flight, and
    after dropping repeated event ids (what consumers do) each room's seq increases."""
    events = room_traffic("redis-kill", 6000)
    batches = [events[i : i + 20] for i in range(0, len(events), 20)]
    sink = RedisStreamsSink(
        "crash", RedisStreamsConfig(url=redis_server.url, key="crash:{room}", maxlen=None)
    )
    await sink.open()
    halfway = asyncio.Event()

    async def deliver_all() -> int:
        failed = 0
        for number, batch in enumerate(batches):
            failed += await deliver_until_acknowledged(sink, batch)
            if number == len(batches) // 3:
                halfway.set()
        return failed

    delivering = asyncio.create_task(deliver_all())
    await halfway.wait()
    await asyncio.to_thread(redis_server.kill)  # deliveries go on meanwhile: the kill lands mid-pipeline
    await asyncio.to_thread(redis_server.start)
    failed = await asyncio.wait_for(delivering, timeouts.EVENT)
    await sink.close()
    assert failed > 0, "the kill did not interrupt delivery"

    for room in sorted({msg.room for msg in events}):
        stored = await read_stream(client, f"crash:{room}")
        first_seen: dict[str, DataMessage] = {}
        for msg in stored:
            first_seen.setdefault(msg.event_id, msg)
        sent = [msg for msg in events if msg.room == room]
        assert set(first_seen) == {msg.event_id for msg in sent}, f"{room}: events missing"
        seqs = [msg.seq for msg in first_seen.values()]
        assert seqs == sorted(seqs) == list(range(1, len(sent) + 1)), f"{room}: order lost"
        assert list(first_seen.values()) == sent


async def test_a_key_of_another_type_rejects_only_its_events(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    events = room_traffic("wrongtype", 12)
    await client.set("wt:room-1", "not a stream")
    sink = RedisStreamsSink("wt", RedisStreamsConfig(url=redis_server.url, key="wt:{room}"))
    await sink.open()
    with pytest.raises(SinkRejected, match="4 events refused") as refused:
        await sink.deliver(events)
    await sink.close()
    assert refused.value.events == [msg for msg in events if msg.room == "room-1"]
    assert await read_stream(client, "wt:room-0") == [msg for msg in events if msg.room == "room-0"]
    assert await read_stream(client, "wt:room-2") == [msg for msg in events if msg.room == "room-2"]


async def test_no_server_is_unavailable_on_open_and_on_deliver(redis_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    sink = RedisStreamsSink("down", RedisStreamsConfig(url=url, connect_timeout=timeouts.PROMPT))
    with pytest.raises(SinkUnavailable, match="redis down"):
        await sink.open()
    with pytest.raises(SinkUnavailable):
        await sink.deliver(room_traffic("down", 3))
    await sink.close()


async def test_streams_are_trimmed_to_about_maxlen(redis_server: RedisServer, client: redis.Redis) -> None:
    events = room_traffic("trim", 3000, rooms=1)
    sink = RedisStreamsSink("trim", RedisStreamsConfig(url=redis_server.url, key="trim:{room}", maxlen=500))
    await sink.open()
    for start in range(0, len(events), 100):
        await sink.deliver(events[start : start + 100])
    await sink.close()
    length = await client.xlen("trim:room-0")
    assert 500 <= length < 1000, length  # `MAXLEN ~` trims whole nodes of the radix tree
    newest = await client.xrevrange("trim:room-0", count=1)
    assert message_from_entry(newest[0][1]) == events[-1]


async def test_the_documented_consumer_handles_each_event_once(redis_server: RedisServer) -> None:
    """docs/sinks.md's consumer, run as written over a stream holding a re-delivered batch."""
    (code,) = re.findall(r"```python\n(.*?)```", SINKS_DOC, re.S)
    events = room_traffic("consumer", 30, rooms=1)
    sink = RedisStreamsSink("doc", RedisStreamsConfig(url=redis_server.url, key="doc:{room}"))
    await sink.open()
    await sink.deliver(events[:20])
    await sink.deliver(events[10:])  # the bridge sent a batch again
    await sink.close()
    handled: list[DataMessage] = []
    all_handled = asyncio.Event()

    async def handle(msg: DataMessage) -> None:
        handled.append(msg)
        if len(handled) == len(events):
            all_handled.set()

    namespace: dict[str, Any] = {"handle": handle}
    exec(code, namespace)
    conn, other = redis.Redis.from_url(redis_server.url), redis.Redis.from_url(redis_server.url)
    consuming = asyncio.create_task(namespace["consume"](conn, "doc:room-0", "archive", "consumer-1"))
    await asyncio.wait_for(all_handled.wait(), timeouts.EVENT)
    # The consumer runs forever; deleting its stream ends it with an error (a cancelled redis-py read
    # does not return before its BLOCK timeout).
    await other.delete("doc:room-0")
    with pytest.raises(redis.ResponseError):
        await asyncio.wait_for(consuming, timeouts.EVENT)
    await conn.aclose()
    await other.aclose()
    assert handled == events
