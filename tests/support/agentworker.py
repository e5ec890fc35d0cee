"""A minimal agent worker for tests: livekit-protocol WorkerMessage/ServerMessage over an aiohttp websocket.

It registers, answers AvailabilityRequest by a settable policy and files every ServerMessage in a
queue per message kind, so tests await exactly the message they expect (no sleeps).
"""

from __future__ import annotations

import asyncio
from typing import Literal

import aiohttp
from livekit.api import AccessToken, VideoGrants
from livekit.protocol import agent as agent_pb
from livekit.protocol import models

from tests.support.timeouts import EVENT

Policy = Literal["accept", "reject", "silent", "terminate"]
KINDS = ("register", "availability", "assignment", "termination", "pong", "go_away")


def agent_token(key: str, secret: str, *, agent: bool = True) -> str:
    return AccessToken(key, secret).with_grants(VideoGrants(agent=agent)).to_jwt()


class TestWorker:
    """One agent worker connection; ``policy`` decides how it answers availability requests."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        url: str,
        key: str = "devkey",
        secret: str = "secret",
        *,
        agent_name: str = "",
        job_type: agent_pb.JobType = agent_pb.JT_ROOM,
        policy: Policy = "accept",
        identity: str = "",
        permissions: models.ParticipantPermission | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/agent"
        self.token = agent_token(key, secret)
        self.agent_name = agent_name
        self.job_type = job_type
        self.policy: Policy = policy
        self.identity = identity
        self.permissions = permissions
        self.worker_id = ""
        self.inbox: dict[str, asyncio.Queue[agent_pb.ServerMessage]] = {k: asyncio.Queue() for k in KINDS}
        self.closed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TestWorker:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url, headers={"Authorization": f"Bearer {self.token}"})
        self._reader = asyncio.get_running_loop().create_task(self._read())
        register = agent_pb.RegisterWorkerRequest(
            type=self.job_type, agent_name=self.agent_name, version="test"
        )
        if self.permissions is not None:
            register.allowed_permissions.CopyFrom(self.permissions)
        await self.send(agent_pb.WorkerMessage(register=register))
        self.worker_id = (await self.expect("register")).register.worker_id

    async def send(self, message: agent_pb.WorkerMessage) -> None:
        assert self._ws is not None
        await self._ws.send_bytes(message.SerializeToString())

    async def expect(self, kind: str, within: float = EVENT) -> agent_pb.ServerMessage:
        return await asyncio.wait_for(self.inbox[kind].get(), within)

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.BINARY:
                    continue
                message = agent_pb.ServerMessage.FromString(frame.data)
                kind = message.WhichOneof("message")
                if kind == "availability":
                    await self._answer(message.availability.job)
                if kind is not None:
                    self.inbox[kind].put_nowait(message)
        finally:
            self.closed.set()

    async def _answer(self, job: agent_pb.Job) -> None:
        if self.policy == "silent":
            return
        answer = agent_pb.AvailabilityResponse(
            job_id=job.id,
            available=self.policy == "accept",
            terminate=self.policy == "terminate",
            participant_identity=self.identity,
            participant_name="Test Agent",
            participant_metadata="agent-meta",
            participant_attributes={"role": "test"},
        )
        await self.send(agent_pb.WorkerMessage(availability=answer))

    async def update_job(self, job_id: str, status: agent_pb.JobStatus, error: str = "") -> None:
        await self.send(
            agent_pb.WorkerMessage(
                update_job=agent_pb.UpdateJobStatus(job_id=job_id, status=status, error=error)
            )
        )

    async def update_status(self, load: float, status: agent_pb.WorkerStatus = agent_pb.WS_AVAILABLE) -> None:
        await self.send(
            agent_pb.WorkerMessage(update_worker=agent_pb.UpdateWorkerStatus(status=status, load=load))
        )

    async def ping(self) -> None:
        """Round-trip a ping: on return every message sent before it has been handled by the server."""
        await self.send(agent_pb.WorkerMessage(ping=agent_pb.WorkerPing(timestamp=1)))
        await self.expect("pong")

    async def aclose(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader
        if self._session is not None:
            await self._session.close()
