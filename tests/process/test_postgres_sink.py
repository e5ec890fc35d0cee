"""The PostgreSQL sink against a real PostgreSQL on loopback (test process; tests/support/postgres_server.py
starts one cluster per module, installed by `make servers`): every field survives the round trip through
the table, a delivering process killed with SIGKILL at random points in 20 runs and restarted from its last
confirmed batch leaves each event exactly once, and refused or unreachable writes raise what the bridge
acts on.

The bridge process (spool, checkpoints, backoff) has its own tests; here the child in
tests/support/postgres_sink_runner.py plays it: deliver, then confirm in a checkpoint file.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import given

from framepool.bridge.postgres_sink import TABLE_DDL, PostgresConfig, PostgresSink
from framepool.bridge.sink import SinkRejected, SinkUnavailable
from framepool.processors.messages import DataMessage
from tests.support import timeouts
from tests.support.postgres_server import PostgresServer, postgres_server
from tests.support.sink_data import fuzz, messages, room_traffic

__all__ = ["postgres_server"]  # the module-scoped fixture
pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
SINKS_DOC = (ROOT / "docs" / "sinks.md").read_text()
SELECT = """SELECT event_id::text, seq, job, room, kind, topic, sender, sender_kind, received_us, reliable,
                   attributes::text, payload FROM {table} {where} ORDER BY room, job, seq"""


def as_message(row: Any) -> DataMessage:
    fields = dict(row)
    return msgspec.convert(fields | {"attributes": json.loads(fields["attributes"])}, DataMessage)


async def stored(conn: Any, table: str, where: str = "", *args: object) -> list[DataMessage]:
    return [as_message(row) for row in await conn.fetch(SELECT.format(table=table, where=where), *args)]


@pytest.fixture
async def conn(postgres_server: PostgresServer) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(postgres_server.dsn)
    yield connection
    await connection.close()


async def open_sink(server: PostgresServer, table: str, **config: Any) -> PostgresSink:
    sink = PostgresSink(table, PostgresConfig(dsn=server.dsn, table=table, **config))
    await sink.open()
    return sink


@pytest.fixture(scope="module")
def loop_runner() -> Iterator[asyncio.Runner]:
    """One event loop for the hypothesis round trip (a sync test, one sink for all its examples)."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="module")
def roundtrip(
    postgres_server: PostgresServer, loop_runner: asyncio.Runner
) -> Iterator[tuple[PostgresSink, Any]]:
    sink = loop_runner.run(open_sink(postgres_server, "roundtrip"))
    connection = loop_runner.run(asyncpg.connect(postgres_server.dsn))
    yield sink, connection
    loop_runner.run(sink.close())
    loop_runner.run(connection.close())


@fuzz(60)
@given(msg=messages())
def test_every_field_round_trips_through_the_table(
    loop_runner: asyncio.Runner, roundtrip: tuple[PostgresSink, Any], msg: DataMessage
) -> None:
    sink, connection = roundtrip
    loop_runner.run(connection.execute("TRUNCATE roundtrip"))  # examples may repeat an event id
    loop_runner.run(sink.deliver([msg]))
    where = "WHERE event_id = $1::uuid"
    assert loop_runner.run(stored(connection, "roundtrip", where, msg.event_id)) == [msg]


async def test_the_table_has_a_typed_column_per_field_and_a_timestamp(
    postgres_server: PostgresServer, conn: Any
) -> None:
    sink = await open_sink(postgres_server, "audit_schema")
    events = room_traffic("schema", 3)
    await sink.deliver(events)
    await sink.close()
    types = dict(
        await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'audit_schema'"
        )
    )
    assert types["event_id"] == "uuid" and types["payload"] == "bytea" and types["attributes"] == "jsonb"
    assert types["seq"] == types["received_us"] == "bigint" and types["reliable"] == "boolean"
    assert set(types) == {*DataMessage.__struct_fields__, "received_at"}
    received_at = await conn.fetchval(
        "SELECT received_at FROM audit_schema WHERE seq = 1 AND room = 'room-0'"
    )
    assert received_at == datetime.datetime.fromtimestamp(events[0].received_us / 1e6, datetime.UTC)


async def test_delivering_again_adds_nothing(postgres_server: PostgresServer, conn: Any) -> None:
    events = room_traffic("again", 50)
    sink = await open_sink(postgres_server, "again")
    await sink.deliver(events[:30])
    await sink.deliver(events[:30])  # a batch whose confirmation was lost
    await sink.deliver(events[20:])  # overlapping the next one
    await sink.close()
    assert await conn.fetchval("SELECT count(*) FROM again") == 50
    assert await stored(conn, "again") == sorted(events, key=lambda m: (m.room, m.job, m.seq))


async def test_events_postgres_cannot_hold_are_rejected_and_the_rest_commits(
    postgres_server: PostgresServer, conn: Any
) -> None:
    good = room_traffic("refused", 6)
    nul = msgspec.structs.replace(good[0], event_id="9f0c1b5e-0000-7000-8000-000000000001", room="a\x00b")
    not_uuid = msgspec.structs.replace(good[1], event_id="not-a-uuid")
    sink = await open_sink(postgres_server, "refused")
    with pytest.raises(SinkRejected, match="2 events") as refused:
        await sink.deliver([nul, *good, not_uuid])
    await sink.close()
    assert refused.value.events == [nul, not_uuid]
    assert await conn.fetchval("SELECT count(*) FROM refused") == 6


async def test_a_constraint_other_than_the_duplicate_rejects_only_its_events(
    postgres_server: PostgresServer, conn: Any
) -> None:
    events = room_traffic("constraint", 9)
    sink = await open_sink(postgres_server, "checked")
    await conn.execute("ALTER TABLE checked ADD CONSTRAINT no_room_1 CHECK (room <> 'room-1')")
    with pytest.raises(SinkRejected, match="3 events: refused by the server") as refused:
        await sink.deliver(events)
    await sink.deliver(events[:1])  # the connection is still good after the savepoints
    await sink.close()
    assert refused.value.events == [msg for msg in events if msg.room == "room-1"]
    assert await conn.fetchval("SELECT count(*) FROM checked") == 6


async def test_a_missing_table_without_create_table_is_unavailable_until_it_exists(
    postgres_server: PostgresServer, conn: Any
) -> None:
    events = room_traffic("missing", 4)
    sink = await open_sink(postgres_server, "made_later", create_table=False)
    with pytest.raises(SinkUnavailable, match="does not exist"):
        await sink.deliver(events)
    await (await open_sink(postgres_server, "made_later")).close()  # an operator creates it
    await sink.deliver(events)
    await sink.close()
    assert await conn.fetchval("SELECT count(*) FROM made_later") == 4


async def test_a_killed_server_is_unavailable_then_delivery_resumes(postgres_server: PostgresServer) -> None:
    events = room_traffic("server-kill", 40)
    sink = await open_sink(postgres_server, "server_kill")
    await sink.deliver(events[:20])
    await asyncio.to_thread(postgres_server.kill)
    try:
        with pytest.raises(SinkUnavailable):
            await sink.deliver(events[20:])
    finally:
        await asyncio.to_thread(postgres_server.start)  # crash recovery; the module's other tests go on
    await sink.deliver(events[10:])
    await sink.close()
    conn = await asyncpg.connect(postgres_server.dsn)
    assert await conn.fetchval("SELECT count(*) FROM server_kill") == 40
    await conn.close()


def start_runner(server: PostgresServer, checkpoint: Path, total: int, batch: int) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tests.support.postgres_sink_runner", server.dsn, "killed_runs"]
    argv += [str(checkpoint), str(total), str(batch)]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def read_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    assert line and not line.startswith("rejected"), f"runner: {line!r}, exit {child.poll()}"
    return line


def test_a_delivering_process_killed_at_random_points_leaves_each_event_exactly_once(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """20 runs of a child delivering batches, each SIGKILLed after a random number of confirmed batches plus
    a random fraction of one, each followed by a restart from the checkpoint (re-delivering the batch it
    had not confirmed, committed or not); a last run to the end. Then the table holds the events sent,
    each once."""
    total, batch, runs = 8000, 20, 20
    checkpoint = tmp_path / "checkpoint"
    seed = random.randrange(2**32)
    chance = random.Random(seed)
    ahead = 0  # kills that landed after a commit and before its checkpoint: rows the restart sends again
    for run in range(runs):
        child = start_runner(postgres_server, checkpoint, total, batch)
        assert read_line(child) == "open"
        for _ in range(chance.randrange(4)):
            assert read_line(child).startswith("confirmed"), f"run {run} (seed {seed}) ended early"
        if chance.random() < 0.75:
            time.sleep(chance.uniform(0, 0.01))  # the kill point: somewhere in the next batch's life
        child.kill()
        assert child.wait(timeouts.PROCESS) == -9, f"run {run} (seed {seed}) was not killed"
        assert child.stdout is not None
        child.stdout.close()
        confirmed = int(checkpoint.read_text()) if checkpoint.exists() else 0
        ahead += asyncio.run(rows_in(postgres_server)) > confirmed * batch
    child = start_runner(postgres_server, checkpoint, total, batch)
    out, _ = child.communicate(timeout=timeouts.PROCESS)
    assert child.returncode == 0 and out.endswith("done\n"), f"last run (seed {seed}): {out[-500:]}"
    sent = {msg.event_id for msg in room_traffic("postgres-kill", total)}
    rows, distinct = asyncio.run(count_rows(postgres_server, sent))
    assert rows == distinct == len(sent), f"seed {seed}; {ahead} kills between a commit and its checkpoint"
    print(f"seed {seed}: {ahead} of {runs} kills left a committed batch unconfirmed")


async def rows_in(server: PostgresServer) -> int:
    conn = await asyncpg.connect(server.dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('killed_runs') IS NOT NULL")
        return int(await conn.fetchval("SELECT count(*) FROM killed_runs")) if exists else 0
    finally:
        await conn.close()


async def count_rows(server: PostgresServer, sent: set[str]) -> tuple[int, int]:
    """Rows and distinct event ids in the table, checking that every row is one of the events `sent`."""
    conn = await asyncpg.connect(server.dsn)
    try:
        row = await conn.fetchrow("SELECT count(*), count(DISTINCT event_id) FROM killed_runs")
        known = await conn.fetchval(
            "SELECT count(*) FROM killed_runs WHERE event_id = ANY($1::uuid[])", list(sent)
        )
        assert known == row[0], "rows that are not events sent"
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


async def test_the_documented_table_and_queries_are_the_real_ones(
    postgres_server: PostgresServer, conn: Any
) -> None:
    """docs/sinks.md shows the sink's own DDL, and its queries run against a table the sink filled."""
    ddl, *queries = re.findall(r"```sql\n(.*?)```", SINKS_DOC, re.S)
    assert (
        ddl.split()
        == TABLE_DDL.format(table="framepool_events", index="framepool_events_room_job_seq").split()
    )
    chat = msgspec.structs.replace(room_traffic("doc", 1)[0], room="lobby", kind="text", topic="lk.chat")
    sink = await open_sink(postgres_server, "framepool_events")
    await sink.deliver([chat, msgspec.structs.replace(chat, event_id=str(uuid.uuid4()), seq=2, kind="dtmf")])
    await sink.close()
    everything, transcript = [await conn.fetch(query) for query in queries[0].split(";\n\n")]
    assert [row["seq"] for row in everything] == [1, 2]
    assert [(row["sender"], row["text"]) for row in transcript] == [(chat.sender, chat.text())]
