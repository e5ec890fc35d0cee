"""A job's outputs to its room (ctx.outputs): data packets to chosen identities, long text, coalesced
attribute updates, RPC calls to a participant; real SDK participants on the dev server."""

from __future__ import annotations

import asyncio

import pytest
from livekit import rtc

from framepool.agent.job import JobContext
from framepool.agent.room_outputs import MAX_PACKET_BYTES
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.sdk import joined, next_event
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


def packets(room: rtc.Room) -> asyncio.Queue[tuple[str, bytes]]:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    room.on("data_received", lambda packet: queue.put_nowait((packet.topic, packet.data)))
    return queue


async def test_outputs_reach_the_right_participants(devserver: DevServer, room_name: str) -> None:
    started = Signal()
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def outputs(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        started.set(ctx)
        await ctx.shutdown_requested.wait()

    async with (
        serving(server),
        joined(devserver, "carol", room_name) as carol,
        joined(devserver, "dave", room_name) as dave,
    ):
        ctx: JobContext = await started.wait()
        agent = ctx.agent.identity
        if agent not in carol.remote_participants:
            await asyncio.wait_for(
                next_event(carol, "participant_connected", lambda p: p.identity == agent), EVENT
            )
        to_carol, to_dave = packets(carol), packets(dave)
        texts: asyncio.Queue[str] = asyncio.Queue()

        async def read_text(reader: rtc.TextStreamReader, identity: str) -> None:
            texts.put_nowait(await reader.read_all())

        carol.register_text_stream_handler(
            "lk.chat", lambda reader, identity: asyncio.ensure_future(read_text(reader, identity))
        )
        carol.local_participant.register_rpc_method("hello", lambda data: f"hi {data.payload}")

        ctx.outputs.publish_data(b"for carol only", topic="private", destinations=["carol"])
        ctx.outputs.publish_data("for everyone", topic="public", reliable=False)
        ctx.outputs.send_text("long " * 10_000)
        for n in range(10):
            ctx.outputs.set_attributes({"tally": str(n), f"key{n % 2}": "x"})
        with pytest.raises(ValueError, match=f"over LiveKit's {MAX_PACKET_BYTES}"):
            ctx.outputs.publish_data(b"x" * (MAX_PACKET_BYTES + 1))
        answer = await ctx.outputs.perform_rpc("carol", "hello", "framepool")

        assert await asyncio.wait_for(to_carol.get(), EVENT) == ("private", b"for carol only")
        assert await asyncio.wait_for(to_carol.get(), EVENT) == ("public", b"for everyone")
        assert await asyncio.wait_for(to_dave.get(), EVENT) == (
            "public",
            b"for everyone",
        )  # not the private one
        assert await asyncio.wait_for(texts.get(), EVENT) == "long " * 10_000
        await ctx.outputs.flush()
        remote = carol.remote_participants[agent]
        if remote.attributes.get("tally") != "9":
            await asyncio.wait_for(
                next_event(
                    carol, "participant_attributes_changed", lambda _c, p: p.attributes.get("tally") == "9"
                ),
                EVENT,
            )
        stats = ctx.outputs.stats()
    assert answer == "hi framepool"
    assert remote.attributes == {"tally": "9", "key0": "x", "key1": "x"}
    assert stats.sent == 3 and stats.failed == 0 and 1 <= stats.attribute_updates < 10, stats
