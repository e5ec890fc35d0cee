"""Room data into a job: every kind the SDK delivers reaches the job's consumer as one DataMessage with the
right kind, topic and sender (real SDK participants, the dev server, a real agent server and pool)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from livekit import rtc

from framepool.agent.intake import SATURATED
from framepool.agent.job import JobContext
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from framepool.processors.messages import DataMessage
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.sdk import joined, next_event
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


class Received:
    """The job's consumer: keeps every message, wakes whoever waits for one that matches."""

    def __init__(self) -> None:
        self.messages: list[DataMessage] = []
        self.accept = True
        self._changed = asyncio.Event()

    def __call__(self, message: DataMessage) -> bool:
        self.messages.append(message)
        self._changed.set()
        return self.accept

    async def first(self, predicate: Callable[[DataMessage], bool]) -> DataMessage:
        async def wait() -> DataMessage:
            while True:
                found = next((m for m in self.messages if predicate(m)), None)
                if found is not None:
                    return found
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(wait(), EVENT)


@asynccontextmanager
async def receiving_job(
    devserver: DevServer, room_name: str, **settings: object
) -> AsyncIterator[tuple[JobContext, Received]]:
    started = Signal()
    received = Received()
    server = AgentServer(agent_settings(devserver, **settings), load_fnc=quiet_load)

    @server.rtc_session()
    async def intake(ctx: JobContext) -> None:
        ctx.receive_data(received, rpc_methods=["vote"])
        await ctx.connect(auto_subscribe=False)
        started.set(ctx)
        await ctx.shutdown_requested.wait()

    async with serving(server), joined(devserver, "alice", room_name) as alice:
        ctx: JobContext = await started.wait()
        await asyncio.wait_for(_wait_for_remote(alice, ctx.agent.identity), EVENT)
        yield ctx, received


async def _wait_for_remote(room: rtc.Room, identity: str) -> None:
    joining = next_event(room, "participant_connected", lambda p: p.identity == identity)
    if identity in room.remote_participants:
        joining.cancel()
        return
    await joining


async def test_every_kind_of_room_data_reaches_the_job(devserver: DevServer, room_name: str) -> None:
    async with (
        receiving_job(devserver, room_name) as (ctx, received),
        joined(devserver, "bob", room_name, can_update_own_metadata=True) as bob,
    ):
        await _wait_for_remote(bob, ctx.agent.identity)
        me = bob.local_participant
        await me.publish_data(b'{"v": 1}', reliable=True, topic="telemetry")
        await me.publish_data(b"lossy", reliable=False, topic="cursor")
        await me.send_text("hello " * 5000, topic="lk.chat", attributes={"lang": "en"})  # chunked
        await me.send_bytes(b"\x00\x01" * 10_000, topic="blob", attributes={"part": "1"})
        answer = await me.perform_rpc(destination_identity=ctx.agent.identity, method="vote", payload="b")
        await me.publish_dtmf(code=5, digit="5")
        await me.set_attributes({"lang": "fr"})
        await me.set_metadata("hello metadata")

        packet = await received.first(lambda m: m.kind == "packet" and m.topic == "telemetry")
        lossy = await received.first(lambda m: m.kind == "packet" and m.topic == "cursor")
        text = await received.first(lambda m: m.kind == "text")
        blob = await received.first(lambda m: m.kind == "bytes")
        rpc = await received.first(lambda m: m.kind == "rpc")
        dtmf = await received.first(lambda m: m.kind == "dtmf")
        attrs = await received.first(lambda m: m.kind == "attributes")
        metadata = await received.first(lambda m: m.kind == "metadata")
    assert packet.payload == b'{"v": 1}' and packet.reliable and packet.sender == "bob"
    assert packet.sender_kind == "standard" and packet.room == room_name and packet.job
    assert lossy.payload == b"lossy" and not lossy.reliable
    assert text.topic == "lk.chat" and text.text() == "hello " * 5000 and text.attributes.get("lang") == "en"
    assert blob.topic == "blob" and blob.payload == b"\x00\x01" * 10_000 and blob.attributes["part"] == "1"
    assert rpc.topic == "vote" and rpc.payload == b"b" and json.loads(answer)["accepted"] is True
    assert dtmf.payload == b"5" and dtmf.sender == "bob"
    assert json.loads(attrs.payload) == {"lang": "fr"}
    assert metadata.payload == b"hello metadata"
    ids = [m.event_id for m in received.messages]
    assert len(set(ids)) == len(ids) and all(uuid.UUID(i).version == 7 for i in ids)
    assert [m.seq for m in received.messages] == list(range(1, len(received.messages) + 1))


async def test_a_flooding_participant_costs_only_its_own_messages(
    devserver: DevServer, room_name: str
) -> None:
    """bob sends ten times his rate: his excess is dropped and counted against him; alice's few all arrive."""
    async with receiving_job(devserver, room_name, data_sender_rate=20.0) as (ctx, received):
        [intake] = ctx.intakes
        async with joined(devserver, "bob", room_name) as bob:
            await _wait_for_remote(bob, ctx.agent.identity)
            for n in range(400):
                await bob.local_participant.publish_data(str(n).encode(), topic="flood")
            alice = ctx.room.remote_participants["alice"]
            assert alice is not None
            await received.first(lambda m: m.topic == "flood" and m.sender == "bob")
        stats = intake.stats()
    bob_got = sum(1 for m in received.messages if m.sender == "bob")
    assert bob_got < 400 and stats.rate_limited["bob"] + bob_got == 400, stats


async def test_an_rpc_the_job_cannot_take_gets_the_saturated_error_at_once(
    devserver: DevServer, room_name: str
) -> None:
    async with receiving_job(devserver, room_name) as (ctx, received):
        received.accept = False
        async with joined(devserver, "bob", room_name) as bob:
            await _wait_for_remote(bob, ctx.agent.identity)
            with pytest.raises(rtc.RpcError) as error:
                await bob.local_participant.perform_rpc(
                    destination_identity=ctx.agent.identity, method="vote", payload="x", response_timeout=5.0
                )
        assert error.value.code == SATURATED
        assert ctx.intakes[0].stats().rpc_saturated == 1


async def test_a_stream_over_the_cap_ends_in_an_error_and_is_counted(
    devserver: DevServer, room_name: str
) -> None:
    async with receiving_job(devserver, room_name, data_stream_max_bytes=10_000) as (ctx, received):
        async with joined(devserver, "bob", room_name) as bob:
            await _wait_for_remote(bob, ctx.agent.identity)
            await bob.local_participant.send_text("x" * 50_000, topic="big")
            await bob.local_participant.send_text("small", topic="after")
            await received.first(lambda m: m.topic == "after")
        stats = ctx.intakes[0].stats()
    assert not any(m.topic == "big" for m in received.messages)
    assert stats.streams_over_cap == 1, stats


async def test_rpc_to_the_job_beyond_the_declared_methods_and_the_v1_limit(
    devserver: DevServer, room_name: str
) -> None:
    """An undeclared method gets LiveKit's UNSUPPORTED_METHOD; a payload over RPC v1's 15,360 B reaches the
    job whole (the SDK sends it over v2 to a server and a callee that support it)."""
    big = "x" * 20_000
    async with (
        receiving_job(devserver, room_name) as (ctx, received),
        joined(devserver, "bob", room_name) as bob,
    ):
        await _wait_for_remote(bob, ctx.agent.identity)
        with pytest.raises(rtc.RpcError) as error:
            await bob.local_participant.perform_rpc(
                destination_identity=ctx.agent.identity, method="not-declared", payload="x"
            )
        answer = await bob.local_participant.perform_rpc(
            destination_identity=ctx.agent.identity, method="vote", payload=big
        )
        message = await received.first(lambda m: m.kind == "rpc")
    assert error.value.code == rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD
    assert message.payload == big.encode() and json.loads(answer)["event_id"] == message.event_id
