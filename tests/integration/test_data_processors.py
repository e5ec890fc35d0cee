"""Data processors in the worker pool, end to end (issue 11, item 3): real SDK participants send data, the
agent's intake hands it to a data processor in a worker (a declarative route's `to_processors`, or a Python
agent's `ctx.attach_data` fed by `ctx.receive_data`), and the processor's results reach a listener in the
room as data messages (dev server, agent server, real pool)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from livekit import rtc

from framepool.agent.datafeed import DataFeed
from framepool.agent.declarative import build_agents
from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from framepool.processors.messages import DataMessage
from framepool.settings import AgentSpec
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.sdk import joined, next_event
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration
AGENT_KIND = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
COUNT = "tests.support.procs:CountMessages"


class Listener:
    """A participant's data messages on some topics, decoded; tests await the ones they expect."""

    def __init__(self, room: rtc.Room, *topics: str) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

        def on_data(packet: rtc.DataPacket) -> None:
            if packet.topic in topics:
                self.received.append((packet.topic, json.loads(packet.data)))
                self._changed.set()

        room.on("data_received", on_data)

    async def until(self, condition: Callable[[list[tuple[str, dict[str, Any]]]], bool], what: str) -> None:
        async def wait() -> None:
            while not condition(self.received):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), EVENT)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; received {self.received}") from None


async def _agent_identity(room: rtc.Room) -> str:
    for participant in room.remote_participants.values():
        if participant.kind == AGENT_KIND:
            return participant.identity
    joining = next_event(room, "participant_connected", lambda p: p.kind == AGENT_KIND)
    return str((await asyncio.wait_for(joining, EVENT)).identity)


async def test_a_route_sends_packets_to_a_declarative_data_processor_whose_results_reach_the_room(
    devserver: DevServer, room_name: str
) -> None:
    spec = AgentSpec(
        agent_name="",
        topic="votes.counted",
        data_processors=[f"counter = {COUNT}(label=poll)"],
        data={"route": [{"name": "votes", "match": {"topic": "vote"}, "to_processors": ["counter"]}]},
    )
    [agent] = build_agents([spec])
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)
    server.agents.append(agent)
    async with (
        serving(server),
        joined(devserver, "listener", room_name) as listener_room,
        joined(devserver, "alice", room_name) as alice,
    ):
        listener = Listener(listener_room, "votes.counted")
        agent_identity = await _agent_identity(alice)
        for number in range(5):
            payload = json.dumps({"choice": "AB"[number % 2]}).encode()
            await alice.local_participant.publish_data(
                payload, topic="vote", destination_identities=[agent_identity]
            )
            # Not routed to the processor: another topic.
            await alice.local_participant.publish_data(
                b"{}", topic="chatter", destination_identities=[agent_identity]
            )
        await listener.until(lambda got: len(got) >= 5, "five results of the data processor")
    results = [body for _topic, body in listener.received]
    assert [r["data"]["count"] for r in results] == [1, 2, 3, 4, 5]  # only the routed topic, in order
    assert all(r["processor"] == COUNT and r["topic"] == "data-count" for r in results)
    first = results[0]["data"]
    assert (first["kind"], first["topic"], first["sender"], first["label"]) == (
        "packet",
        "vote",
        "alice",
        "poll",
    )
    assert json.loads(first["text"]) == {"choice": "A"}
    assert results[0]["participant"] == "" and results[0]["track"] == ""  # a data result has no track


async def test_attach_data_with_receive_data_hands_every_message_to_a_processor(
    devserver: DevServer, room_name: str
) -> None:
    started = Signal()
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    taken: asyncio.Queue[tuple[str, int, bool]] = asyncio.Queue()  # what send() said of each message

    @server.rtc_session()
    async def entrypoint(ctx: JobContext) -> None:
        feed = await ctx.attach_data({"echo": COUNT}, output=DataOutput(topic="echoed"))

        def consume(message: DataMessage) -> bool:
            accepted = feed.send(message)
            taken.put_nowait((message.kind, len(message.payload), accepted))
            return accepted

        ctx.receive_data(consume)
        await ctx.connect(auto_subscribe=False)
        started.set((ctx, feed))
        await ctx.shutdown_requested.wait()

    async with (
        serving(server),
        joined(devserver, "listener", room_name) as listener_room,
        joined(devserver, "bob", room_name) as bob,
    ):
        listener = Listener(listener_room, "echoed")
        ctx, feed = await started.wait()
        assert isinstance(feed, DataFeed) and ctx.data_processors == {"echo": feed}
        await _agent_identity(bob)
        to_agent = [ctx.agent.identity]
        await bob.local_participant.send_text(
            "hello " * 2000, topic="lk.chat", destination_identities=to_agent
        )
        await bob.local_participant.publish_data(b"ping", topic="telemetry", destination_identities=to_agent)
        # Over the processor's 20 KiB messages: refused whole and counted, never split (framepool.ipc.slots).
        await bob.local_participant.send_text("x" * 30_000, topic="essay", destination_identities=to_agent)
        outcomes = [await asyncio.wait_for(taken.get(), EVENT) for _ in range(3)]
        await listener.until(lambda got: len(got) >= 2, "both messages echoed")
        stats = feed.stats()
    assert sorted(outcomes) == [("packet", 4, True), ("text", 12_000, True), ("text", 30_000, False)]
    kinds = sorted((body["data"]["kind"], body["data"]["topic"]) for _topic, body in listener.received)
    assert kinds == [("packet", "telemetry"), ("text", "lk.chat")]
    text = next(body["data"] for _topic, body in listener.received if body["data"]["kind"] == "text")
    assert text["text"] == "hello " * 2000 and text["sender"] == "bob"
    assert (stats.sent, stats.oversize, stats.dropped, stats.lost) == (3, 1, 0, 0) and stats.processed == 2
