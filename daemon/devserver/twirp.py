"""Twirp RoomService and AgentDispatchService of the loopback dev server (runs in the dev server process).

Routes ``POST /twirp/livekit.<Service>/<Method>`` with protobuf (``application/protobuf``) or
protojson (``application/json``) bodies, answered in the request's encoding. Errors are Twirp's
JSON ``{"code", "msg"}`` with Twirp's HTTP statuses, raised in the order a Twirp server wrapped in
livekit-server's auth middleware raises them: a bad token (401) before routing (bad_route 404),
routing before decoding (malformed 400), decoding before the method's grant check (401 "permissions denied",
as livekit-server wraps it). Grants follow livekit-server: roomCreate for CreateRoom/DeleteRoom, roomList for
ListRooms, roomAdmin for the room for participant operations, SendData and agent dispatch.
"""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import models
from livekit.protocol import room as room_pb

from .agents import RoomListenerRegistry, dispatcher_for
from .agents import ServerView as AgentServerView
from .auth import (
    AuthError,
    Claims,
    require_room_admin,
    require_room_create,
    require_room_list,
    token_from_request,
    verify_token,
)
from .dispatch import AgentDispatcher, ParticipantView, RoomView

log = logging.getLogger("framepool.devserver.twirp")

# Twirp's error codes and the HTTP statuses its servers give them.
TWIRP_STATUS = {
    "canceled": 408,
    "unknown": 500,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
}
# aiohttp's default request size limit; checked here too so an oversized body gets a Twirp error.
MAX_BODY_BYTES = 1 << 20
ROOM_NOT_FOUND = "requested room does not exist"
# Real RoomService methods the dev server does not serve: say so (unimplemented) instead of bad_route.
UNSERVED_ROOM_METHODS = frozenset(
    {
        "UpdateRoomMetadata",
        "MutePublishedTrack",
        "UpdateSubscriptions",
        "ForwardParticipant",
        "MoveParticipant",
    }
)
PARTICIPANT_NOT_FOUND = "participant does not exist"


class TwirpError(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg

    def response(self) -> web.Response:
        body = json.dumps({"code": self.code, "msg": self.msg})
        return web.Response(status=TWIRP_STATUS[self.code], text=body, content_type="application/json")


class ManagedRoom(RoomView, Protocol):
    """What RoomService needs of a room (rooms.Room)."""

    @property
    def sid(self) -> str: ...
    async def remove_participant(self, identity: str) -> bool: ...
    async def update_participant(
        self,
        identity: str,
        *,
        metadata: str | None,
        attributes: dict[str, str] | None,
        name: str | None,
        permission: models.ParticipantPermission | None,
    ) -> ParticipantView | None: ...
    def send_data(self, packet: models.DataPacket, sender: None) -> None: ...


class RoomDirectory(RoomListenerRegistry, Protocol):
    """What RoomService needs of the room registry (rooms.RoomRegistry)."""

    def get(self, name: str) -> ManagedRoom | None: ...
    def list(self) -> Sequence[ManagedRoom]: ...
    async def create(
        self,
        name: str,
        *,
        empty_timeout: int = 0,
        departure_timeout: int = 0,
        max_participants: int = 0,
        metadata: str = "",
        agents: builtins.list[dispatch_pb.RoomAgentDispatch] | None = None,
    ) -> ManagedRoom: ...
    async def delete(self, name: str) -> bool: ...


class ServerView(AgentServerView, Protocol):
    """What this module needs of framepool.devserver.server.DevServer."""

    @property
    def rooms(self) -> RoomDirectory: ...


Handler = Callable[[Any, Claims], Awaitable[Message]]


@dataclass(frozen=True)
class Method:
    request_type: type[Message]
    handler: Handler


def _room(rooms: RoomDirectory, name: str) -> ManagedRoom:
    room = rooms.get(name)
    if room is None:
        raise TwirpError("not_found", ROOM_NOT_FOUND)
    return room


def _participant(room: ManagedRoom, identity: str) -> ParticipantView:
    participant = room.participants.get(identity)
    if participant is None:
        raise TwirpError("not_found", PARTICIPANT_NOT_FOUND)
    return participant


class RoomService:
    """livekit.RoomService over the dev server's room registry."""

    def __init__(self, rooms: RoomDirectory) -> None:
        self.rooms = rooms

    def methods(self) -> dict[str, Method]:
        return {
            "CreateRoom": Method(room_pb.CreateRoomRequest, self.create_room),
            "ListRooms": Method(room_pb.ListRoomsRequest, self.list_rooms),
            "DeleteRoom": Method(room_pb.DeleteRoomRequest, self.delete_room),
            "ListParticipants": Method(room_pb.ListParticipantsRequest, self.list_participants),
            "GetParticipant": Method(room_pb.RoomParticipantIdentity, self.get_participant),
            "RemoveParticipant": Method(room_pb.RoomParticipantIdentity, self.remove_participant),
            "UpdateParticipant": Method(room_pb.UpdateParticipantRequest, self.update_participant),
            "SendData": Method(room_pb.SendDataRequest, self.send_data),
        }

    async def create_room(self, req: room_pb.CreateRoomRequest, claims: Claims) -> models.Room:
        require_room_create(claims)
        if not req.name:
            raise TwirpError("invalid_argument", "room name is required")
        room = await self.rooms.create(
            req.name,
            empty_timeout=req.empty_timeout,
            departure_timeout=req.departure_timeout,
            max_participants=req.max_participants,
            metadata=req.metadata,
            agents=list(req.agents),
        )
        return room.to_proto()

    async def list_rooms(self, req: room_pb.ListRoomsRequest, claims: Claims) -> room_pb.ListRoomsResponse:
        require_room_list(claims)
        wanted = set(req.names)
        rooms = [r.to_proto() for r in self.rooms.list() if not wanted or r.name in wanted]
        return room_pb.ListRoomsResponse(rooms=rooms)

    async def delete_room(self, req: room_pb.DeleteRoomRequest, claims: Claims) -> room_pb.DeleteRoomResponse:
        require_room_create(claims)
        if not await self.rooms.delete(req.room):
            raise TwirpError("not_found", "room not found")
        return room_pb.DeleteRoomResponse()

    async def list_participants(
        self, req: room_pb.ListParticipantsRequest, claims: Claims
    ) -> room_pb.ListParticipantsResponse:
        require_room_admin(claims, req.room)
        room = _room(self.rooms, req.room)
        return room_pb.ListParticipantsResponse(
            participants=[p.to_proto() for p in room.participants.values()]
        )

    async def get_participant(
        self, req: room_pb.RoomParticipantIdentity, claims: Claims
    ) -> models.ParticipantInfo:
        require_room_admin(claims, req.room)
        return _participant(_room(self.rooms, req.room), req.identity).to_proto()

    async def remove_participant(
        self, req: room_pb.RoomParticipantIdentity, claims: Claims
    ) -> room_pb.RemoveParticipantResponse:
        require_room_admin(claims, req.room)
        room = _room(self.rooms, req.room)
        if not await room.remove_participant(req.identity):
            raise TwirpError("not_found", "participant not found")
        return room_pb.RemoveParticipantResponse()

    async def update_participant(
        self, req: room_pb.UpdateParticipantRequest, claims: Claims
    ) -> models.ParticipantInfo:
        require_room_admin(claims, req.room)
        room = _room(self.rooms, req.room)
        _participant(room, req.identity)
        # As livekit-server: empty fields mean "leave unchanged".
        updated = await room.update_participant(
            req.identity,
            metadata=req.metadata or None,
            attributes=dict(req.attributes) or None,
            name=req.name or None,
            permission=req.permission if req.HasField("permission") else None,
        )
        if updated is None:
            raise TwirpError("not_found", PARTICIPANT_NOT_FOUND)
        return updated.to_proto()

    async def send_data(self, req: room_pb.SendDataRequest, claims: Claims) -> room_pb.SendDataResponse:
        require_room_admin(claims, req.room)
        room = _room(self.rooms, req.room)
        by_sid = {p.to_proto().sid: identity for identity, p in room.participants.items()}
        destinations = list(
            dict.fromkeys(
                [*req.destination_identities, *(by_sid[s] for s in req.destination_sids if s in by_sid)]
            )
        )
        user = models.UserPacket(payload=req.data, destination_identities=destinations, nonce=req.nonce)
        if req.HasField("topic"):
            user.topic = req.topic
        packet = models.DataPacket(kind=req.kind, destination_identities=destinations, user=user)
        room.send_data(packet, None)
        return room_pb.SendDataResponse()


class AgentDispatchService:
    """livekit.AgentDispatchService over the dev server's dispatcher; every method needs roomAdmin."""

    def __init__(self, rooms: RoomDirectory, dispatcher: AgentDispatcher) -> None:
        self.rooms = rooms
        self.dispatcher = dispatcher

    def methods(self) -> dict[str, Method]:
        return {
            "CreateDispatch": Method(dispatch_pb.CreateAgentDispatchRequest, self.create_dispatch),
            "ListDispatch": Method(dispatch_pb.ListAgentDispatchRequest, self.list_dispatch),
            "DeleteDispatch": Method(dispatch_pb.DeleteAgentDispatchRequest, self.delete_dispatch),
        }

    async def create_dispatch(
        self, req: dispatch_pb.CreateAgentDispatchRequest, claims: Claims
    ) -> dispatch_pb.AgentDispatch:
        require_room_admin(claims, req.room)
        if not req.room:
            raise TwirpError("invalid_argument", "room name is required")
        # livekit-server creates the room when it does not exist yet (room auto-creation).
        room = self.rooms.get(req.room) or await self.rooms.create(req.room)
        return self.dispatcher.create_dispatch(room, req.agent_name, req.metadata, dict(req.attributes))

    async def list_dispatch(
        self, req: dispatch_pb.ListAgentDispatchRequest, claims: Claims
    ) -> dispatch_pb.ListAgentDispatchResponse:
        require_room_admin(claims, req.room)
        _room(self.rooms, req.room)
        return dispatch_pb.ListAgentDispatchResponse(
            agent_dispatches=self.dispatcher.list_dispatches(req.room, req.dispatch_id)
        )

    async def delete_dispatch(
        self, req: dispatch_pb.DeleteAgentDispatchRequest, claims: Claims
    ) -> dispatch_pb.AgentDispatch:
        require_room_admin(claims, req.room)
        _room(self.rooms, req.room)
        deleted = self.dispatcher.delete_dispatch(req.room, req.dispatch_id)
        if deleted is None:
            raise TwirpError("not_found", "dispatch not found")
        return deleted


class TwirpRouter:
    """Decodes, authenticates and routes Twirp requests to service methods; encodes answers and errors."""

    def __init__(self, keys: dict[str, str], services: Mapping[str, Mapping[str, Method]]) -> None:
        self.keys = keys
        self.services = services

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._handle(request)
        except TwirpError as exc:
            log.info("%s %s -> %s: %s", request.method, request.path, exc.code, exc.msg)
            return exc.response()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        claims = self._claims(request)
        method = self._route(request)
        encoding = _encoding(request)
        message = await self._decode(request, method.request_type, encoding)
        if claims is None:
            raise TwirpError("unauthenticated", "no authorization token provided")
        try:
            answer = await method.handler(message, claims)
        except AuthError as exc:
            raise TwirpError("unauthenticated", exc.message) from exc
        except TwirpError:
            raise
        except Exception as exc:
            log.exception("%s failed", request.path)
            raise TwirpError("internal", f"{type(exc).__name__}: {exc}") from exc
        if encoding == "json":
            text = json_format.MessageToJson(
                answer,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
                indent=None,
            )
            return web.Response(text=text, content_type="application/json")
        return web.Response(body=answer.SerializeToString(), content_type="application/protobuf")

    def _claims(self, request: web.Request) -> Claims | None:
        try:
            token = token_from_request(request)
            return None if token is None else verify_token(token, self.keys)
        except AuthError as exc:
            raise TwirpError("unauthenticated", exc.message) from exc

    def _route(self, request: web.Request) -> Method:
        if request.method != "POST":
            raise TwirpError("bad_route", f"unsupported method {request.method!r} (only POST is allowed)")
        service, _, name = request.match_info["route"].partition("/")
        method = self.services.get(service, {}).get(name)
        if method is None and service == "livekit.RoomService" and name in UNSERVED_ROOM_METHODS:
            raise TwirpError("unimplemented", f"{name} is not supported by the framepool dev server")
        if method is None:
            raise TwirpError("bad_route", f"no handler for path {request.path!r}")
        return method

    async def _decode(self, request: web.Request, request_type: type[Message], encoding: str) -> Message:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise TwirpError("malformed", f"request body exceeds {MAX_BODY_BYTES} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise TwirpError("malformed", f"request body exceeds {MAX_BODY_BYTES} bytes") from exc
        message = request_type()
        try:
            if encoding == "json":
                json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
            else:
                message.ParseFromString(body)
        except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
            raise TwirpError("malformed", f"the {encoding} request could not be decoded: {exc}") from exc
        return message


def _encoding(request: web.Request) -> str:
    content_type = request.content_type
    if content_type == "application/json":
        return "json"
    if content_type == "application/protobuf":
        return "protobuf"
    raise TwirpError("bad_route", f"unexpected Content-Type: {request.headers.get('Content-Type', '')!r}")


def setup(app: web.Application, server: ServerView) -> None:
    """Serve livekit.RoomService and livekit.AgentDispatchService under /twirp."""
    dispatcher = dispatcher_for(app, server)
    services = {
        "livekit.RoomService": RoomService(server.rooms).methods(),
        "livekit.AgentDispatchService": AgentDispatchService(server.rooms, dispatcher).methods(),
    }
    router = TwirpRouter(server.keys, services)
    app.router.add_route("*", "/twirp/{route:.+}", router.handle)
