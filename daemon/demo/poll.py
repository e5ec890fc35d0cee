"""The demo's live poll (demo process, supervisor side): voters, the tally's listener and a webhook receiver.

Four SDK participants vote with data packets sent to the agent only (`destination_identities`); the agent's
data flow (`POLL`, run by `ctx.run_dataflow(load_dataflow(POLL))`) keeps the last vote per sender, publishes
the tally on the topic `poll.tally` and as its `poll` attribute, and routes every vote to the sink `votes`:
a webhook that `VoteReceiver` serves on loopback in this process, checking each request's Standard Webhooks
signature as any receiver would (the bridge process signs it; this module does not reuse its code). The
closing check: every vote sent arrived at the webhook (by event id, signatures valid, per-voter order kept)
and the tally the listener saw equals the last vote of each voter.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from livekit import rtc

from framepool.bridge.registry import SinkSpec

SECRET = "whsec_" + base64.b64encode(b"framepool demo webhook secret").decode()
TALLY_TOPIC = "poll.tally"
POLL: dict[str, Any] = {
    "aggregate": [
        {
            "name": "poll",
            "match": {"kind": ["packet"], "topic": "vote"},
            "key": "payload.choice",
            "per_sender": True,  # a voter who changes their mind moves their one vote
            "window": "global",
            "emit": "every",
            "every_s": 0.5,
            "to_topic": TALLY_TOPIC,
            "attribute": "poll",
            "attribute_min_interval_s": 0.5,
        }
    ],
    "route": [{"match": {"topic": "vote"}, "to_bridges": ["votes"]}],
}
# (voter, choice) in the order they are sent: bob and carol change their minds.
VOTES = (("alice", "A"), ("bob", "B"), ("carol", "C"), ("bob", "A"), ("dave", "B"), ("carol", "B"))


def expected_tally(votes: tuple[tuple[str, str], ...] = VOTES) -> dict[str, int]:
    last = dict(votes)
    return {choice: list(last.values()).count(choice) for choice in sorted(set(last.values()))}


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check (docs/dataflows.md): a `v1,` signature of `id.timestamp.body` matches."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers.get('webhook-id', '')}.{headers.get('webhook-timestamp', '')}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    signatures = headers.get("webhook-signature", "").split()
    offered = [item.partition(",")[2] for item in signatures if item.startswith("v1,")]
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


@dataclass
class VoteReceiver:
    """A webhook endpoint on 127.0.0.1 (aiohttp): 200 for a correctly signed request, 401 otherwise."""

    secret: str = SECRET
    events: list[dict[str, Any]] = field(default_factory=list)  # accepted, in arrival order
    requests: int = 0
    bad_signatures: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/votes"

    def sink(self) -> SinkSpec:
        return SinkSpec(name="votes", type="webhook", options={"url": self.url, "secret": self.secret})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/votes", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        if not verify(self.secret, {k.lower(): v for k, v in request.headers.items()}, body):
            self.bad_signatures += 1
            return web.Response(status=401)
        data = json.loads(body)
        self.events.extend(data.get("events", [data]))
        self._changed.set()
        return web.Response(status=200)

    def event_ids(self) -> set[str]:
        return {event["event_id"] for event in self.events}

    async def wait_for(self, count: int) -> None:
        while len(self.event_ids()) < count:
            self._changed.clear()
            await self._changed.wait()


class TallyListener:
    """The tallies the agent publishes (topic `poll.tally`, attribute `poll`), as a listener sees them."""

    def __init__(self, room: rtc.Room) -> None:
        self.tallies = 0
        self.last: dict[str, int] = {}
        self.attribute: dict[str, int] = {}
        self._changed = asyncio.Event()
        room.on("data_received", self._on_data)
        room.on("participant_attributes_changed", self._on_attributes)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic == TALLY_TOPIC:
            results = json.loads(packet.data)["results"]
            if results != self.last:
                print(f"  poll    tally from the agent on {TALLY_TOPIC!r}: {json.dumps(results)}")
            self.tallies += 1
            self.last = results
            self._changed.set()

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if "poll" in changed:
            self.attribute = json.loads(changed["poll"])
            self._changed.set()

    async def wait_for(self, tally: dict[str, int]) -> None:
        while self.last != tally or self.attribute != tally:
            self._changed.clear()
            await self._changed.wait()


async def vote(voters: dict[str, rtc.Room], agent: str, interval: float) -> None:
    """Send `VOTES` in order, `interval` seconds apart, each to the agent only."""
    for voter, choice in VOTES:
        payload = json.dumps({"choice": choice}).encode()
        sender = voters[voter].local_participant
        await sender.publish_data(payload, topic="vote", destination_identities=[agent])
        print(f"  poll    {voter} votes {choice}")
        await asyncio.sleep(interval)


def delivered_in_order(receiver: VoteReceiver) -> bool:
    """Each voter's votes reached the webhook in the order they were sent (first delivery of each event)."""
    seen: set[str] = set()
    per_voter: dict[str, list[str]] = {}
    for event in receiver.events:
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            per_voter.setdefault(event["sender"], []).append(json.loads(event["payload"])["choice"])
    sent: dict[str, list[str]] = {}
    for voter, choice in VOTES:
        sent.setdefault(voter, []).append(choice)
    return per_voter == sent


@dataclass
class PollOutcome:
    receiver: VoteReceiver
    listener: TallyListener
    completed: bool = False  # the final tally and every vote arrived before the deadline

    def report(self) -> bool:
        """Print the poll's lines of the summary; True when the poll did what it should."""
        tally, receiver = expected_tally(), self.receiver
        lost = len(VOTES) - len(receiver.event_ids())
        print(f"  {len(VOTES):6d} votes sent by {len(dict(VOTES))} voters (last vote per voter: {tally})")
        print(
            f"  {self.listener.tallies:6d} tallies received on {TALLY_TOPIC!r}, last {self.listener.last}, "
            f"agent attribute poll={self.listener.attribute}: {'matches' if self.completed else 'MISMATCH'}"
        )
        in_order = delivered_in_order(receiver)
        print(
            f"  {len(receiver.event_ids()):6d} votes delivered to the webhook {receiver.url} "
            f"({receiver.requests} requests, {receiver.bad_signatures} bad signatures, "
            f"{'per-voter order kept' if in_order else 'ORDER BROKEN'}), {lost} lost"
        )
        return self.completed and lost == 0 and receiver.bad_signatures == 0 and in_order
