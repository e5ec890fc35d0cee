"""`framepool listen --room R`: see what an agent does in a room without writing code (client process: the
command is its own process, no supervisor, no workers).

It joins with subscribe-only grants and prints, as they arrive:
- each participant that joins or leaves, with its kind (`agent` for framepool and other agents);
- results: a data packet whose body is a framepool result prints as the processor, the packet's topic,
  the participant whose track it is about, the sender and a short form of `data`; other packets as their
  size and text; at most one line per sender, processor and topic every `--print-every` seconds (all are
  counted and saved);
- each track subscribed (a publisher's, or one an agent publishes, such as `video-motion(visualize=true)`'s
  difference image), whose frames it counts;
- byte streams on the listened topics (`snapshot` always), with their size.
Every `SUMMARY_EVERY_S` and at exit a summary counts frames per track and messages per topic. `--topic`
keeps only those data topics. `--save DIR` keeps everything (framepool.listensave). Ctrl-C or SIGTERM
leave in order and exit 0; losing the room exits 3 after the summary.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc

from framepool.errors import ExitStatus, ServerUnavailableError
from framepool.listensave import ListenArchive
from framepool.roomclient import Credentials, join
from framepool.signals import StopSignals
from framepool.tasks import TaskSet, first_of

log = logging.getLogger(__name__)

SUMMARY_EVERY_S = 10.0
PAYLOAD_CHARS = 100
BYTE_TOPICS = ("snapshot",)  # byte streams are only received on registered topics: the built-in one


def kind_name(participant: rtc.Participant | None) -> str:
    """`agent`, `standard`, `ingress`, ...; `server` for packets a server API sent."""
    if participant is None:
        return "server"
    return rtc.ParticipantKind.Name(participant.kind).removeprefix("PARTICIPANT_KIND_").lower()


def short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    return text if len(text) <= PAYLOAD_CHARS else text[: PAYLOAD_CHARS - 1] + "…"


@dataclass
class TrackTally:
    participant: str
    name: str
    kind: str
    frames: int = 0
    since: float = field(default_factory=time.monotonic)


class Listener:
    """Prints and counts what arrives in one room; keeps it in an archive when given one."""

    def __init__(
        self, room: rtc.Room, topics: set[str], print_every: float, archive: ListenArchive | None
    ) -> None:
        self.room = room
        self.topics = topics
        self.print_every = print_every
        self.archive = archive
        self.messages: collections.Counter[str] = collections.Counter()
        self.tracks: dict[str, TrackTally] = {}
        self._printed: dict[tuple[str, ...], float] = {}
        self._tasks = TaskSet("listen", log)
        room.on("data_received", self._on_data)
        room.on("track_subscribed", self._on_track)
        room.on(
            "participant_connected", lambda p: print(f"joined  {p.identity} ({kind_name(p)})", flush=True)
        )
        room.on("participant_disconnected", lambda p: print(f"left    {p.identity}", flush=True))
        for topic in sorted({*BYTE_TOPICS, *topics}):
            room.register_byte_stream_handler(topic, self._on_byte_stream)

    def greet(self) -> None:
        """The participants already in the room, and their tracks (subscribed ones are announced as well)."""
        for participant in self.room.remote_participants.values():
            print(f"present {participant.identity} ({kind_name(participant)})", flush=True)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        topic = packet.topic or ""
        if self.topics and topic not in self.topics:
            return
        sender = packet.participant.identity if packet.participant else ""
        sender_kind = kind_name(packet.participant)
        self.messages[topic] += 1
        try:
            message: Any = json.loads(packet.data)
        except ValueError:
            message = packet.data.decode(errors="replace")
        if self.archive is not None:
            self.archive.result(sender, sender_kind, topic, message)
        key: tuple[str, ...]
        if _is_result(message):
            key = (sender, topic, message["processor"], message["topic"])
            line = (
                f"result  {message['processor']} topic={topic!r} about {message['participant'] or '-'} "
                f"from {sender} ({sender_kind}): {short(message['data'])}"
            )
        else:
            key = (sender, topic)
            size = len(packet.data)
            line = f"data    topic={topic!r} from {sender} ({sender_kind}), {size} B: {short(message)}"
        now = time.monotonic()
        if now - self._printed.get(key, -self.print_every) >= self.print_every:
            self._printed[key] = now
            print(line, flush=True)

    def _on_track(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        kind = "audio" if track.kind == rtc.TrackKind.KIND_AUDIO else "video"
        tally = TrackTally(participant.identity, publication.name or publication.sid, kind)
        self.tracks[publication.sid] = tally
        print(
            f"track   {kind} {tally.name!r} of {participant.identity} ({kind_name(participant)})", flush=True
        )
        self._tasks.spawn(self._count(track, tally), name=f"count {publication.sid}")

    async def _count(self, track: rtc.Track, tally: TrackTally) -> None:
        stream: rtc.AudioStream | rtc.VideoStream
        stream = rtc.AudioStream(track) if tally.kind == "audio" else rtc.VideoStream(track)
        try:
            async for event in stream:
                if self.archive is not None:
                    self._save_frame(tally, event.frame)
                tally.frames += 1
        finally:
            await stream.aclose()
            if self.archive is not None:
                self.archive.track_ended(tally.participant, tally.name)

    def _save_frame(self, tally: TrackTally, frame: rtc.AudioFrame | rtc.VideoFrame) -> None:
        assert self.archive is not None
        if isinstance(frame, rtc.AudioFrame):
            self.archive.audio(tally.participant, tally.name, frame)
        else:
            self.archive.video(tally.participant, tally.name, tally.frames, frame)

    def _on_byte_stream(self, reader: rtc.ByteStreamReader, sender: str) -> None:
        self._tasks.spawn(self._read_bytes(reader, sender), name=f"bytes {reader.info.stream_id}")

    async def _read_bytes(self, reader: rtc.ByteStreamReader, sender: str) -> None:
        data = b"".join([chunk async for chunk in reader])
        info = reader.info
        self.messages[f"{info.topic} (bytes)"] += 1
        where = ""
        if self.archive is not None:
            where = f" -> {self.archive.byte_stream(sender, info.stream_id, info.name, data)}"
        size = len(data)
        print(f"bytes   topic={info.topic!r} from {sender}: {info.name!r} {info.mime_type}, {size} B{where}")

    def summary(self, elapsed: float) -> str:
        total = sum(self.messages.values())
        lines = [f"summary after {elapsed:.0f} s: tracks {len(self.tracks)}, messages {total}"]
        now = time.monotonic()
        for tally in self.tracks.values():
            rate = tally.frames / max(now - tally.since, 1e-3)
            lines.append(
                f"  {tally.participant} {tally.kind} {tally.name!r}: {tally.frames} frames ({rate:.1f}/s)"
            )
        lines += [f"  topic {topic!r}: {count} messages" for topic, count in sorted(self.messages.items())]
        return "\n".join(lines)

    async def aclose(self) -> None:
        await self._tasks.aclose()


def _is_result(message: Any) -> bool:
    return isinstance(message, dict) and {"participant", "processor", "topic", "data"} <= message.keys()


async def listen(
    creds: Credentials,
    room_name: str,
    identity: str,
    topics: set[str],
    print_every: float,
    archive: ListenArchive | None,
) -> int:
    """Join, print and count until a stop signal or the room is lost; the exit status."""
    signals = StopSignals()
    signals.install()
    room = rtc.Room()
    lost = asyncio.Event()
    room.on("disconnected", lambda reason: lost.set())
    listener = Listener(room, topics, print_every, archive)
    started = time.monotonic()
    await join(room, creds, room_name, identity, can_publish=False)  # a failure is one line, no summary
    print(f"listening in room {room_name!r} at {creds.url} as {identity!r}; Ctrl-C to leave", flush=True)
    listener.greet()
    try:
        while (
            ended := await first_of({"signal": signals.first.wait(), "lost": lost.wait()}, SUMMARY_EVERY_S)
        ) is None:
            print(listener.summary(time.monotonic() - started), flush=True)
    finally:
        await room.disconnect()
        await listener.aclose()
        print(listener.summary(time.monotonic() - started), flush=True)
        if archive is not None:
            archive.close()
    if ended == "lost":
        raise ServerUnavailableError(f"disconnected from room {room_name!r} at {creds.url}")
    return ExitStatus.OK
