"""Rooms and participants of the loopback dev server (runs in the dev server process).

The registry is the single source of truth for who is where: the signal sessions (signal.py) join and
leave through it, CONTROL's Twirp services and agent dispatch read it and listen to its events
(`RoomEvents`). A participant talks to its client through a `ParticipantLink` (its signal session), so
rooms never touch websockets or peer connections directly.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from livekit.protocol import agent_dispatch, models
from livekit.protocol import rtc as rtc_pb

from framepool.devserver.data import RoomData, broadcast
from framepool.devserver.rtc import FrameRelay
from framepool.tasks import TaskSet

log = logging.getLogger("framepool.devserver")

_SID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"


def new_sid(prefix: str) -> str:
    """A LiveKit-style id; the SDK drops objects whose sid lacks the PA_/TR_/RM_ prefix."""
    return prefix + "".join(secrets.choice(_SID_ALPHABET) for _ in range(12))


class RoomEvents(Protocol):
    """Listener interface (every method optional, may be async but data_relayed) for add_listener."""

    def room_created(self, room: Room) -> None: ...
    def participant_joined(self, room: Room, participant: Participant) -> None: ...
    def track_published(self, room: Room, participant: Participant, track: models.TrackInfo) -> None: ...
    def participant_left(
        self, room: Room, participant: Participant, reason: models.DisconnectReason
    ) -> None: ...
    def room_closed(self, room: Room) -> None: ...
    def data_relayed(
        self, room: Room, sender: Participant | None, packet: models.DataPacket
    ) -> None: ...  # synchronous


class ParticipantLink(Protocol):
    """What a room needs from a participant's signal session."""

    async def send(self, response: rtc_pb.SignalResponse) -> None: ...
    async def disconnect(self, reason: models.DisconnectReason) -> None: ...
    async def subscribe(self, track: PublishedTrack) -> None: ...
    async def unsubscribe(self, track_sid: str) -> None: ...
    def send_data(self, payload: bytes, reliable: bool) -> None: ...


class PublishedTrack:
    """One track a participant publishes: its TrackInfo and the relay that fans its frames out."""

    def __init__(self, owner: Participant, info: models.TrackInfo) -> None:
        self.owner = owner
        self.info = info
        kind = "audio" if info.type == models.TrackType.AUDIO else "video"
        self.relay = FrameRelay(kind)

    @property
    def sid(self) -> str:
        return self.info.sid


class Participant:
    """A participant of a room (a connected signal session)."""

    def __init__(
        self,
        identity: str,
        *,
        name: str = "",
        kind: int = models.ParticipantInfo.Kind.STANDARD,
        metadata: str = "",
        attributes: dict[str, str] | None = None,
        permission: models.ParticipantPermission | None = None,
        link: ParticipantLink | None = None,
        auto_subscribe: bool = True,
        client_info: models.ClientInfo | None = None,
    ) -> None:
        self.identity = identity
        self.sid = new_sid("PA_")
        self.name = name
        self.kind = kind
        self.metadata = metadata
        self.attributes: dict[str, str] = dict(attributes or {})
        self.permission = (
            permission
            if permission is not None
            else models.ParticipantPermission(can_subscribe=True, can_publish=True, can_publish_data=True)
        )
        self.joined_at = int(time.time())
        self.joined_at_ms = int(time.time() * 1000)
        self.link = link
        self.auto_subscribe = auto_subscribe
        self.tracks: dict[str, PublishedTrack] = {}
        self.state = models.ParticipantInfo.State.JOINED
        self.version = 1
        # What the client told the server about itself: others' SDKs choose RPC v2, inline data streams and
        # compression from its client_protocol and capabilities (ParticipantInfo), as with livekit-server.
        self.client_info = client_info if client_info is not None else models.ClientInfo()
        self.last_reliable_seq = 0

    @property
    def is_agent(self) -> bool:
        return self.kind == models.ParticipantInfo.Kind.AGENT

    @property
    def is_dependent(self) -> bool:
        """Agents and egress exist for the others: livekit-server neither counts nor limits them."""
        return self.kind in (models.ParticipantInfo.Kind.AGENT, models.ParticipantInfo.Kind.EGRESS)

    def to_proto(self) -> models.ParticipantInfo:
        return models.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            name=self.name,
            state=self.state,
            kind=self.kind,  # type: ignore[arg-type]
            metadata=self.metadata,
            attributes=self.attributes,
            joined_at=self.joined_at,
            joined_at_ms=self.joined_at_ms,
            version=self.version,
            permission=self.permission,
            is_publisher=bool(self.tracks),
            tracks=[t.info for t in self.tracks.values()],
            client_protocol=self.client_info.client_protocol,
            capabilities=self.client_info.capabilities,
        )

    def touch(self) -> None:
        """Bump the version: clients ignore participant updates whose version is not newer."""
        self.version += 1


class Room:
    """A room: participants by identity, created on first join, closed after the last one left."""

    def __init__(
        self,
        registry: RoomRegistry,
        name: str,
        *,
        empty_timeout: int,
        departure_timeout: float,
        max_participants: int,
        metadata: str,
        agents: list[agent_dispatch.RoomAgentDispatch],
    ) -> None:
        self.registry = registry
        self.name = name
        self.sid = new_sid("RM_")
        self.created_at = int(time.time())
        self.created_at_ms = int(time.time() * 1000)
        self.empty_timeout = empty_timeout
        self.departure_timeout = departure_timeout
        self.max_participants = max_participants
        self.metadata = metadata
        self.agents = agents
        self.participants: dict[str, Participant] = {}
        # Admitted but not joined yet (the websocket is being set up): they count against max_participants.
        self.admitted: set[str] = set()
        self.closed = asyncio.Event()
        self.data = RoomData()
        self._close_timer: asyncio.TimerHandle | None = None

    def to_proto(self) -> models.Room:
        return models.Room(
            sid=self.sid,
            name=self.name,
            empty_timeout=self.empty_timeout,
            departure_timeout=int(self.departure_timeout),
            max_participants=self.max_participants,
            creation_time=self.created_at,
            creation_time_ms=self.created_at_ms,
            metadata=self.metadata,
            num_participants=len(self.participants),
            num_publishers=sum(1 for p in self.participants.values() if p.tracks),
        )

    def visible(self, exclude: Participant | None = None) -> list[Participant]:
        """Participants others are told about (hidden ones are not announced)."""
        return [p for p in self.participants.values() if p is not exclude and not p.permission.hidden]

    async def broadcast(self, response: rtc_pb.SignalResponse, exclude: Participant | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant is not exclude and participant.link is not None:
                await participant.link.send(response)

    async def announce(self, participant: Participant) -> None:
        """Tell everyone else about a participant's new state (nothing if it is hidden)."""
        if participant.permission.hidden:
            return
        update = rtc_pb.SignalResponse(update=rtc_pb.ParticipantUpdate(participants=[participant.to_proto()]))
        await self.broadcast(update, exclude=participant)

    def admit(self, participant: Participant) -> bool:
        """Reserve a place for a joining participant; False when the room is full (max_participants).

        A participant replacing one of the same identity takes that one's place.
        """
        if self.max_participants > 0 and not participant.is_dependent:
            others = {identity for identity, p in self.participants.items() if not p.is_dependent}
            others |= self.admitted
            others.discard(participant.identity)
            if len(others) >= self.max_participants:
                return False
        if not participant.is_dependent:
            self.admitted.add(participant.identity)
        return True

    def release(self, participant: Participant) -> None:
        """An admitted participant joined or gave up: its reservation ends."""
        self.admitted.discard(participant.identity)

    async def join(self, participant: Participant) -> None:
        self.release(participant)
        previous = self.participants.get(participant.identity)
        if previous is not None:
            await self.leave(previous, models.DisconnectReason.DUPLICATE_IDENTITY)
            if previous.link is not None:
                await previous.link.disconnect(models.DisconnectReason.DUPLICATE_IDENTITY)
        if not participant.is_dependent:
            # An agent alone does not keep a room open: the pending empty/departure close stays armed.
            self._cancel_close()
        self.participants[participant.identity] = participant
        client = participant.client_info
        log.info(
            "join room=%s identity=%s sid=%s kind=%s sdk=%s %s protocol=%d client_protocol=%d",
            self.name,
            participant.identity,
            participant.sid,
            models.ParticipantInfo.Kind.Name(participant.kind),
            models.ClientInfo.SDK.Name(client.sdk),
            client.version,
            client.protocol,
            client.client_protocol,
        )
        await self.announce(participant)
        await self.registry.emit("participant_joined", self, participant)

    async def leave(self, participant: Participant, reason: models.DisconnectReason) -> None:
        """Remove a participant (idempotent): unpublish its tracks, tell the others, maybe schedule close."""
        if self.participants.get(participant.identity) is not participant:
            return
        del self.participants[participant.identity]
        for track in list(participant.tracks.values()):
            await self.unpublish(participant, track.sid, announce=False)
        participant.state = models.ParticipantInfo.State.DISCONNECTED
        participant.touch()
        log.info(
            "leave room=%s identity=%s sid=%s reason=%s",
            self.name,
            participant.identity,
            participant.sid,
            models.DisconnectReason.Name(reason),
        )
        await self.announce(participant)
        await self.registry.emit("participant_left", self, participant, reason)
        # departure_timeout counts from the last non-agent leaving; an agent leaving does not restart it.
        if not participant.is_dependent and not any(not p.is_dependent for p in self.participants.values()):
            self._schedule_close(self.departure_timeout)

    def _schedule_close(self, delay: float) -> None:
        self._cancel_close()
        loop = asyncio.get_running_loop()
        self._close_timer = loop.call_later(delay, lambda: self.registry.spawn(self._close_if_unused()))

    def _cancel_close(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    async def _close_if_unused(self) -> None:
        if not any(not p.is_dependent for p in self.participants.values()):
            await self.registry.close_room(self, models.DisconnectReason.ROOM_CLOSED)

    async def publish(self, participant: Participant, track: PublishedTrack) -> None:
        """Announce a track whose media is arriving and subscribe everyone who auto-subscribes."""
        participant.tracks[track.sid] = track
        participant.touch()
        await self.announce(participant)
        for other in list(self.participants.values()):
            if (
                other is not participant
                and other.auto_subscribe
                and other.permission.can_subscribe
                and other.link is not None
            ):
                await other.link.subscribe(track)
        await self.registry.emit("track_published", self, participant, track.info)

    async def unpublish(self, participant: Participant, track_sid: str, *, announce: bool = True) -> None:
        track = participant.tracks.pop(track_sid, None)
        if track is None:
            return
        for other in list(self.participants.values()):
            if other.link is not None and other is not participant:
                await other.link.unsubscribe(track_sid)
        track.relay.stop()
        if announce:
            participant.touch()
            await self.announce(participant)
            await participant.link.send(
                rtc_pb.SignalResponse(track_unpublished=rtc_pb.TrackUnpublishedResponse(track_sid=track_sid))
            ) if participant.link is not None else None

    async def set_muted(self, participant: Participant, track_sid: str, muted: bool) -> None:
        track = participant.tracks.get(track_sid)
        if track is None or track.info.muted == muted:
            return
        track.info.muted = muted
        participant.touch()
        await self.announce(participant)

    def find_track(self, track_sid: str) -> PublishedTrack | None:
        for participant in self.participants.values():
            if track_sid in participant.tracks:
                return participant.tracks[track_sid]
        return None

    async def remove_participant(self, identity: str) -> bool:
        participant = self.participants.get(identity)
        if participant is None:
            return False
        await self.leave(participant, models.DisconnectReason.PARTICIPANT_REMOVED)
        if participant.link is not None:
            await participant.link.disconnect(models.DisconnectReason.PARTICIPANT_REMOVED)
        return True

    async def update_participant(
        self,
        identity: str,
        *,
        metadata: str | None = None,
        attributes: dict[str, str] | None = None,
        name: str | None = None,
        permission: models.ParticipantPermission | None = None,
    ) -> Participant | None:
        """Change a participant and tell everyone, itself included (attributes merge; "" deletes a key)."""
        participant = self.participants.get(identity)
        if participant is None:
            return None
        if metadata is not None:
            participant.metadata = metadata
        if name is not None:
            participant.name = name
        if attributes is not None:
            for key, value in attributes.items():
                if value:
                    participant.attributes[key] = value
                else:
                    participant.attributes.pop(key, None)
        if permission is not None:
            participant.permission = permission
        participant.touch()
        if participant.link is not None:
            await participant.link.send(
                rtc_pb.SignalResponse(update=rtc_pb.ParticipantUpdate(participants=[participant.to_proto()]))
            )
        await self.announce(participant)
        return participant

    def send_data(self, packet: models.DataPacket, sender: Participant | None) -> None:
        """Deliver a stamped data packet to its destinations (data.py; `sender` None: the server's own)."""
        broadcast(self, packet, sender)


class RoomRegistry:
    """Every open room of one dev server, and the listeners that want to hear about them."""

    def __init__(self, departure_timeout: float = 20.0, empty_timeout: float = 300.0) -> None:
        self.departure_timeout = departure_timeout
        self.empty_timeout = empty_timeout
        self.rooms: dict[str, Room] = {}
        self.closing = False
        self._listeners: builtins.list[object] = []
        self._tasks = TaskSet("dev server rooms", log)

    def add_listener(self, listener: object) -> None:
        self._listeners.append(listener)

    def get(self, name: str) -> Room | None:
        return self.rooms.get(name)

    def list(self) -> builtins.list[Room]:
        return list(self.rooms.values())

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background coroutine owned by the registry; its failure is logged, never lost."""
        return self._tasks.spawn(coroutine)

    def tap_data(self, room: Room, sender: Participant | None, packet: models.DataPacket) -> None:
        """Hand a relayed data packet to listeners with `data_relayed`, synchronously (order is kept)."""
        for listener in list(self._listeners):
            handler: Callable[..., Any] | None = getattr(listener, "data_relayed", None)
            if handler is not None:
                try:
                    handler(room, sender, packet)
                except Exception:
                    log.exception("room listener %r failed on data_relayed", listener)

    async def emit(self, event: str, *args: Any) -> None:
        for listener in list(self._listeners):
            handler: Callable[..., Any] | None = getattr(listener, event, None)
            if handler is None:
                continue
            try:
                result = handler(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("room listener %r failed on %s", listener, event)

    async def create(
        self,
        name: str,
        *,
        empty_timeout: int = 0,
        departure_timeout: int = 0,
        max_participants: int = 0,
        metadata: str = "",
        agents: builtins.list[agent_dispatch.RoomAgentDispatch] | None = None,
    ) -> Room:
        """The room of that name, created (and announced to listeners) when it does not exist yet."""
        room = self.rooms.get(name)
        if room is not None:
            return room
        room = Room(
            self,
            name,
            empty_timeout=empty_timeout or int(self.empty_timeout),
            departure_timeout=departure_timeout or self.departure_timeout,
            max_participants=max_participants,
            metadata=metadata,
            agents=list(agents or []),
        )
        self.rooms[name] = room
        log.info("room created room=%s sid=%s", name, room.sid)
        await self.emit("room_created", room)
        if not room.participants:
            room._schedule_close(room.empty_timeout)
        return room

    async def delete(self, name: str) -> bool:
        room = self.rooms.get(name)
        if room is None:
            return False
        await self.close_room(room, models.DisconnectReason.ROOM_DELETED)
        return True

    async def close_room(self, room: Room, reason: models.DisconnectReason) -> None:
        """Disconnect everyone still in the room with `reason`, then forget it (idempotent)."""
        if self.rooms.get(room.name) is not room:
            return
        del self.rooms[room.name]
        room._cancel_close()
        leaving = list(room.participants.values())
        for participant in leaving:
            await room.leave(participant, reason)
        # Concurrently: each disconnect waits for its client's websocket close handshake.
        await asyncio.gather(*(p.link.disconnect(reason) for p in leaving if p.link is not None))
        room.closed.set()
        log.info(
            "room closed room=%s sid=%s reason=%s", room.name, room.sid, models.DisconnectReason.Name(reason)
        )
        await self.emit("room_closed", room)

    async def aclose(self) -> None:
        """Refuse new joins, close every room (SERVER_SHUTDOWN) concurrently, end background tasks."""
        self.closing = True
        await asyncio.gather(
            *(
                self.close_room(room, models.DisconnectReason.SERVER_SHUTDOWN)
                for room in list(self.rooms.values())
            )
        )
        await self._tasks.aclose()
