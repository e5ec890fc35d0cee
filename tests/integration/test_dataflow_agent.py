"""A declarative agent's data flow end to end: participants vote with data packets, the agent aggregates and
publishes the tally on a topic and as its attribute, and every vote reaches a webhook through the spool and
the bridge process (real SDK participants, dev server, agent server, bridge process, aiohttp receiver)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from framepool.agent.declarative import build_agents
from framepool.agent.server import AgentServer
from framepool.bridge.registry import SinkSpec
from framepool.devserver.server import DevServer
from framepool.settings import AgentSpec
from tests.support.agentkit import agent_settings, quiet_load, serving
from tests.support.sdk import agent_of, joined, next_event
from tests.support.timeouts import EVENT
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.integration

POLL = {
    "aggregate": [
        {
            "name": "poll",
            "match": {"kind": ["packet"], "topic": "vote"},
            "key": "payload.choice",
            "per_sender": True,
            "window": "global",
            "emit": "every",
            "every_s": 0.5,
            "to_topic": "poll.tally",
            "attribute": "poll",
            "attribute_min_interval_s": 0.5,
        }
    ],
    "route": [{"match": {"topic": "vote"}, "to_bridges": ["votes"]}],
}


async def test_a_live_poll_tallies_votes_and_bridges_every_one(
    devserver: DevServer, room_name: str, tmp_path: Path
) -> None:
    receiver = WebhookReceiver(secret="whsec_c2VjcmV0")
    await receiver.start()
    sink = SinkSpec(name="votes", type="webhook", options={"url": receiver.url, "secret": receiver.secret})
    settings = agent_settings(devserver, sinks=[sink], spool_dir=str(tmp_path / "spool"))
    server = AgentServer(settings, load_fnc=quiet_load)
    [agent] = build_agents([AgentSpec(agent_name="", data=POLL)])
    server.agents.append(agent)
    try:
        async with serving(server), joined(devserver, "alice", room_name) as alice:
            agent_identity = (await asyncio.wait_for(agent_of(alice), EVENT)).identity
            tallies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            alice.on(
                "data_received",
                lambda p: tallies.put_nowait(json.loads(p.data)) if p.topic == "poll.tally" else None,
            )
            async with joined(devserver, "bob", room_name) as bob:
                to_agent = [agent_identity]
                for room, choice in ((alice, "A"), (bob, "B"), (bob, "A")):  # bob changes his mind
                    payload = json.dumps({"choice": choice}).encode()
                    await room.local_participant.publish_data(
                        payload, topic="vote", destination_identities=to_agent
                    )
                tally = await _tally_reaching(tallies, {"A": 2})
                remote = alice.remote_participants[agent_identity]
                if json.loads(remote.attributes.get("poll", "{}")) != tally:
                    await asyncio.wait_for(
                        next_event(
                            alice,
                            "participant_attributes_changed",
                            lambda _c, p: "A" in p.attributes.get("poll", ""),
                        ),
                        EVENT,
                    )
                await receiver.wait_for_events(3)
        delivered = receiver.delivered()
    finally:
        await receiver.stop()
    assert json.loads(remote.attributes["poll"]) == {"A": 2}
    assert [json.loads(e["payload"])["choice"] for e in delivered][:3] == ["A", "B", "A"]
    assert {e["sender"] for e in delivered} == {"alice", "bob"} and all(a.verified for a in receiver.attempts)


async def _tally_reaching(tallies: asyncio.Queue[dict[str, Any]], expected: dict[str, int]) -> dict[str, int]:
    while True:
        tally = await asyncio.wait_for(tallies.get(), EVENT)
        if tally["results"] == expected:
            return expected


CAPTIONS = {
    "route": [
        {
            "match": {"topic": "captions"},
            "to_room": [
                {
                    "topic": "captions.local",
                    "destination_attribute": "lang",
                    "destination_value_from": "payload.lang",
                }
            ],
        }
    ]
}


async def test_an_attribute_routed_fan_out_reaches_only_the_matching_listeners(
    devserver: DevServer, room_name: str
) -> None:
    """Captions go to the listeners whose `lang` attribute is the caption's language, and to nobody else."""
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)
    [agent] = build_agents([AgentSpec(data=CAPTIONS)])
    server.agents.append(agent)
    async with (
        serving(server),
        joined(devserver, "speaker", room_name) as speaker,
        joined(devserver, "anne", room_name, attributes={"lang": "fr"}) as anne,
        joined(devserver, "bernd", room_name, attributes={"lang": "de"}) as bernd,
    ):
        agent_identity = (await asyncio.wait_for(agent_of(speaker), EVENT)).identity
        got: dict[str, asyncio.Queue[dict[str, str]]] = {"anne": asyncio.Queue(), "bernd": asyncio.Queue()}
        for name, room in (("anne", anne), ("bernd", bernd)):
            room.on(
                "data_received",
                lambda p, name=name: (
                    got[name].put_nowait(json.loads(p.data)) if p.topic == "captions.local" else None
                ),
            )
        to_agent = [agent_identity]
        for lang, text in (("fr", "bonjour"), ("de", "guten Tag"), ("fr", "au revoir")):
            payload = json.dumps({"lang": lang, "text": text}).encode()
            await speaker.local_participant.publish_data(
                payload, topic="captions", destination_identities=to_agent
            )
        anne_got = [await asyncio.wait_for(got["anne"].get(), EVENT) for _ in range(2)]
        bernd_got = [await asyncio.wait_for(got["bernd"].get(), EVENT)]
        await speaker.local_participant.publish_data(
            json.dumps({"lang": "de", "text": "ende"}).encode(),
            topic="captions",
            destination_identities=to_agent,
        )
        bernd_got.append(await asyncio.wait_for(got["bernd"].get(), EVENT))  # anne's share came before this
    assert [c["text"] for c in anne_got] == ["bonjour", "au revoir"] and got["anne"].empty()
    assert [c["text"] for c in bernd_got] == ["guten Tag", "ende"]
