"""The telemetry publishers of the data-flow benchmark (a child process of the harness, never framepool's).

    python benchmarks/_dataflow_publish.py --url ws://… --room R --participants 50 --rate 20 --bytes 200 \
        --seconds 60 --to agent|<identity>

Joins `--participants` SDK participants to the room, finds the destination (`agent`: the first participant
of kind AGENT, waiting for it to join; else that identity), prints `{"event": "ready"}`, waits for a `go` line
on stdin, then has every participant send `--rate` reliable data packets per second of `--bytes` bytes
(deterministic JSON: participant, sequence, padding) on the topic `telemetry` to the destination only,
paced by the monotonic clock, for `--seconds`. Prints `{"event": "done", "sent": n, "late_ms_max": …}` and
stays connected until stdin closes (so the room does not end under the receiver), then disconnects.

The publishers run here, not in the harness, so that the harness's CPU is the receiver's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from livekit import api, rtc

TOPIC = "telemetry"


def payload(participant: int, seq: int, size: int) -> bytes:
    head = json.dumps({"p": participant, "n": seq, "pad": ""})
    return head.replace('"pad": ""', '"pad": "' + "x" * max(0, size - len(head)) + '"').encode()


def say(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def destination(room: rtc.Room, to: str) -> str:
    if to != "agent":
        return to
    joined = asyncio.Event()
    room.on("participant_connected", lambda participant: joined.set())
    while True:
        for participant in room.remote_participants.values():
            if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                return participant.identity
        joined.clear()
        await joined.wait()


async def send(room: rtc.Room, index: int, target: str, args: argparse.Namespace, start: float) -> float:
    """Send this participant's packets; return how late (s) the worst one left against its schedule."""
    loop, late = asyncio.get_running_loop(), 0.0
    offset = index / (args.rate * args.participants)  # spread the participants over one period
    for seq in range(int(args.rate * args.seconds)):
        due = start + offset + seq / args.rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        late = max(late, loop.time() - due)
        await room.local_participant.publish_data(
            payload(index, seq, args.bytes), reliable=True, topic=TOPIC, destination_identities=[target]
        )
    return late


async def main(args: argparse.Namespace) -> None:
    rooms = [rtc.Room() for _ in range(args.participants)]
    for index, room in enumerate(rooms):
        grants = api.VideoGrants(room_join=True, room=args.room)
        jwt = (
            api.AccessToken(args.key, args.secret)
            .with_identity(f"sensor-{index:03d}")
            .with_grants(grants)
            .to_jwt()
        )
        await room.connect(args.url, jwt)
    target = await asyncio.wait_for(destination(rooms[0], args.to), 60)
    say({"event": "ready", "to": target})
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    start = loop.time() + 0.05
    lates = await asyncio.gather(*(send(room, i, target, args, start) for i, room in enumerate(rooms)))
    sent = len(rooms) * int(args.rate * args.seconds)
    say({"event": "done", "sent": sent, "seconds": loop.time() - start, "late_ms_max": 1000 * max(lates)})
    await loop.run_in_executor(None, sys.stdin.read)  # until the harness closes stdin
    for room in rooms:
        await room.disconnect()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--bytes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--to", default="agent")
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    asyncio.run(main(parser.parse_args()))
