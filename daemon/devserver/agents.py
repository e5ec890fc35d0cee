"""The ``/agent`` worker endpoint of the loopback dev server (runs in the dev server process).

An agent worker connects with a bearer JWT carrying the ``agent`` video grant and speaks the
livekit-protocol worker protocol: WorkerMessage from the worker, ServerMessage back, one protobuf
per binary frame (or protojson per text frame, answered in kind, as livekit-server allows).
The first message must be RegisterWorkerRequest. A frame that does not decode, an oversized
frame or a worker that never registers closes that one connection with a websocket close code
and a log line; the server carries on. Job bookkeeping lives in dispatch.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from aiohttp import WSCloseCode, WSMsgType, web
from google.protobuf import json_format, text_format
from google.protobuf.message import DecodeError
from livekit.api import AccessToken, VideoGrants
from livekit.protocol import agent as agent_pb
from livekit.protocol import models

from .auth import AuthError, quiet_short_secrets, require_agent, verify_request
from .dispatch import AgentDispatcher, JobRecord, new_id

log = logging.getLogger("framepool.devserver.agents")

# livekit-server's websocket read limit is generous; a worker message is small, so 1 MiB is plenty
# and keeps a misbehaving client from making the server buffer without bound.
MAX_MESSAGE_BYTES = 1 << 20
REGISTER_TIMEOUT = 10.0
AGENT_DISPATCHER = web.AppKey("agent_dispatcher", AgentDispatcher)

# What a worker that states no allowed_permissions gets, as in livekit-server.
DEFAULT_PERMISSIONS = models.ParticipantPermission(
    can_subscribe=True, can_publish=True, can_publish_data=True, can_update_metadata=True, agent=True
)


class RoomListenerRegistry(Protocol):
    def add_listener(self, listener: object) -> None: ...


class ServerView(Protocol):
    """What this module needs of framepool.devserver.server.DevServer."""

    @property
    def keys(self) -> dict[str, str]: ...
    @property
    def url(self) -> str: ...
    @property
    def verbose(self) -> bool: ...
    @property
    def rooms(self) -> RoomListenerRegistry: ...


class ProtocolViolation(Exception):
    """A worker broke the protocol: its connection is closed with ``code``."""

    def __init__(self, code: WSCloseCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class AgentWorker:
    """One connected agent worker: its registration, load, jobs and pending availability offers."""

    def __init__(self, ws: web.WebSocketResponse, dispatcher: AgentDispatcher, verbose: bool) -> None:
        self.ws = ws
        self.dispatcher = dispatcher
        self.verbose = verbose
        self.id = ""
        self.job_type: agent_pb.JobType = agent_pb.JT_ROOM
        self.agent_name = ""
        self.namespace = ""
        self.permissions = DEFAULT_PERMISSIONS
        self.status: agent_pb.WorkerStatus = agent_pb.WS_AVAILABLE
        self.load = 0.0
        self.draining = False
        self.jobs: dict[str, JobRecord] = {}
        self._json = False
        self._send_lock = asyncio.Lock()
        self._offers: dict[str, asyncio.Future[agent_pb.AvailabilityResponse | None]] = {}

    @property
    def registered(self) -> bool:
        return bool(self.id)

    @property
    def available(self) -> bool:
        return (
            self.registered
            and not self.ws.closed
            and self.status == agent_pb.WS_AVAILABLE
            and not self.draining
        )

    def can_take(self, agent_name: str, job_type: agent_pb.JobType) -> bool:
        return self.registered and self.agent_name == agent_name and self.job_type == job_type

    async def send(self, payload: ServerPayload) -> None:
        message = _server_message(payload)
        if self.verbose:
            log.info("worker %s <- %s", self.id or "?", _trace(message))
        try:
            async with self._send_lock:
                if self._json:
                    await self.ws.send_str(json_format.MessageToJson(message, indent=None))
                else:
                    await self.ws.send_bytes(message.SerializeToString())
        except (ConnectionError, RuntimeError) as exc:
            log.warning("worker %s: send failed: %s", self.id or "?", exc)

    async def request_availability(
        self, job: agent_pb.Job, answer_within: float
    ) -> agent_pb.AvailabilityResponse | None:
        """Offer ``job``; the worker's answer, or None when it is silent for ``answer_within`` s or leaves."""
        offer: asyncio.Future[agent_pb.AvailabilityResponse | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._offers[job.id] = offer
        try:
            await self.send(agent_pb.AvailabilityRequest(job=job))
            return await asyncio.wait_for(offer, answer_within)
        except TimeoutError:
            return None
        finally:
            self._offers.pop(job.id, None)

    async def serve(self) -> None:
        """Read messages until the worker leaves or breaks the protocol."""
        try:
            async with asyncio.timeout(REGISTER_TIMEOUT):
                first = await self._receive()
            if first is None:
                return
            if first.WhichOneof("message") != "register":
                raise ProtocolViolation(WSCloseCode.POLICY_VIOLATION, "the first message must be register")
            await self._on_message(first)
            while (message := await self._receive()) is not None:
                await self._on_message(message)
        except TimeoutError:
            log.warning("agent worker did not register within %.0f s: closing", REGISTER_TIMEOUT)
            await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"register timeout")
        except ProtocolViolation as exc:
            log.warning("agent worker %s: %s: closing", self.id or "(unregistered)", exc)
            await self.ws.close(code=exc.code, message=str(exc).encode()[:120])
        finally:
            self._disconnected()

    async def close(self) -> None:
        await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def _receive(self) -> agent_pb.WorkerMessage | None:
        frame = await self.ws.receive()
        message = agent_pb.WorkerMessage()
        try:
            if frame.type == WSMsgType.BINARY:
                message.ParseFromString(frame.data)
            elif frame.type == WSMsgType.TEXT:
                self._json = True
                json_format.Parse(frame.data, message, ignore_unknown_fields=True)
            elif frame.type == WSMsgType.ERROR:
                log.warning(
                    "agent worker %s: websocket error: %s", self.id or "(unregistered)", self.ws.exception()
                )
                return None
            else:
                return None  # CLOSE / CLOSING / CLOSED
        except (DecodeError, json_format.ParseError) as exc:
            raise ProtocolViolation(WSCloseCode.INVALID_TEXT, f"invalid WorkerMessage: {exc}") from exc
        if self.verbose:
            log.info("worker %s -> %s", self.id or "?", _trace(message))
        return message

    async def _on_message(self, message: agent_pb.WorkerMessage) -> None:
        kind = message.WhichOneof("message")
        if kind == "register":
            await self._on_register(message.register)
        elif kind == "availability":
            offer = self._offers.get(message.availability.job_id)
            if offer is not None and not offer.done():
                offer.set_result(message.availability)
        elif kind == "update_worker":
            self._on_worker_status(message.update_worker)
        elif kind == "update_job":
            self.dispatcher.update_job(self, message.update_job)
        elif kind == "ping":
            now_ms = int(time.time() * 1000)
            await self.send(agent_pb.WorkerPong(last_timestamp=message.ping.timestamp, timestamp=now_ms))
        elif kind == "simulate_job":
            self.dispatcher.launch_simulated(self, message.simulate_job)
        elif kind == "migrate_job":
            self.dispatcher.adopt(self, message.migrate_job)

    async def _on_register(self, request: agent_pb.RegisterWorkerRequest) -> None:
        if self.registered:
            log.warning("worker %s: second RegisterWorkerRequest ignored", self.id)
            return
        self.id = new_id("AW_")
        self.job_type = request.type
        self.agent_name = request.agent_name
        self.namespace = request.namespace
        if request.HasField("allowed_permissions"):
            self.permissions = request.allowed_permissions
        self.dispatcher.workers[self.id] = self
        log.info(
            "agent worker %s registered: type %s, agent_name %r, version %r",
            self.id,
            agent_pb.JobType.Name(self.job_type),
            self.agent_name,
            request.version,
        )
        info = models.ServerInfo(
            edition=models.ServerInfo.Standard, version="framepool-devserver", protocol=16
        )
        await self.send(agent_pb.RegisterWorkerResponse(worker_id=self.id, server_info=info))

    def _on_worker_status(self, update: agent_pb.UpdateWorkerStatus) -> None:
        if update.HasField("status") and update.status != self.status:
            log.info("worker %s: %s", self.id, agent_pb.WorkerStatus.Name(update.status))
            self.status = update.status
        self.load = min(max(update.load, 0.0), 1.0)
        self.draining = self.draining or update.draining

    def _disconnected(self) -> None:
        for offer in self._offers.values():
            if not offer.done():
                offer.set_result(None)
        if self.registered:
            self.dispatcher.workers.pop(self.id, None)
            log.info("agent worker %s disconnected (%d live jobs)", self.id, len(self.jobs))


ServerPayload = (
    agent_pb.RegisterWorkerResponse
    | agent_pb.AvailabilityRequest
    | agent_pb.JobAssignment
    | agent_pb.JobTermination
    | agent_pb.WorkerPong
)


def _server_message(payload: ServerPayload) -> agent_pb.ServerMessage:
    if isinstance(payload, agent_pb.RegisterWorkerResponse):
        return agent_pb.ServerMessage(register=payload)
    if isinstance(payload, agent_pb.AvailabilityRequest):
        return agent_pb.ServerMessage(availability=payload)
    if isinstance(payload, agent_pb.JobAssignment):
        return agent_pb.ServerMessage(assignment=payload)
    if isinstance(payload, agent_pb.JobTermination):
        return agent_pb.ServerMessage(termination=payload)
    return agent_pb.ServerMessage(pong=payload)


def _trace(message: agent_pb.WorkerMessage | agent_pb.ServerMessage) -> str:
    text = text_format.MessageToString(message, as_one_line=True)
    return text if len(text) <= 400 else text[:400] + "..."


def mint_agent_token(
    keys: dict[str, str],
    room: str,
    identity: str,
    name: str,
    metadata: str,
    attributes: dict[str, str],
    permissions: models.ParticipantPermission,
) -> str:
    """The participant token of a JobAssignment: kind agent, the worker's registered permissions."""
    api_key, api_secret = next(iter(keys.items()))
    sources = [models.TrackSource.Name(s).lower() for s in permissions.can_publish_sources]
    grants = VideoGrants(
        room_join=True,
        room=room,
        agent=True,
        hidden=permissions.hidden or None,
        can_publish=permissions.can_publish,
        can_subscribe=permissions.can_subscribe,
        can_publish_data=permissions.can_publish_data,
        can_update_own_metadata=permissions.can_update_metadata or None,
        can_publish_sources=sources or None,
    )
    token = AccessToken(api_key, api_secret).with_identity(identity).with_kind("agent").with_grants(grants)
    if name:
        token.with_name(name)
    if metadata:
        token.with_metadata(metadata)
    if attributes:
        token.with_attributes(attributes)
    with quiet_short_secrets():
        return token.to_jwt()


def dispatcher_for(app: web.Application, server: ServerView) -> AgentDispatcher:
    """The application's dispatcher, created (and listening to the server's rooms) on first use."""
    if AGENT_DISPATCHER in app:
        return app[AGENT_DISPATCHER]
    keys = server.keys

    def mint(
        room: str,
        identity: str,
        name: str,
        metadata: str,
        attributes: dict[str, str],
        permissions: models.ParticipantPermission,
    ) -> str:
        return mint_agent_token(keys, room, identity, name, metadata, attributes, permissions)

    dispatcher = AgentDispatcher(mint, url=lambda: server.url)
    app[AGENT_DISPATCHER] = dispatcher
    server.rooms.add_listener(dispatcher)

    async def close_workers(app: web.Application) -> None:
        del app
        await dispatcher.aclose()

    app.on_shutdown.append(close_workers)
    return dispatcher


def setup(app: web.Application, server: ServerView) -> None:
    """Serve ``/agent``: agent workers register there and receive jobs."""
    dispatcher = dispatcher_for(app, server)
    keys = server.keys

    async def agent_endpoint(request: web.Request) -> web.StreamResponse:
        try:
            require_agent(verify_request(request, keys))
        except AuthError as exc:
            log.info("agent connection refused: %s", exc.message)
            return web.Response(status=exc.status, text=exc.message)
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        log.info("agent worker connected from %s", request.remote)
        await AgentWorker(ws, dispatcher, server.verbose).serve()
        return ws

    app.router.add_get("/agent", agent_endpoint)
