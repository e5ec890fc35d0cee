"""The agent server's /agent client against servers that misbehave: garbage, no server, refused
credentials."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web
from livekit.protocol import agent as agent_pb

from framepool.agent.job import JobContext
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from framepool.errors import ServerUnavailableError
from framepool.settings import Settings
from tests.support.agentkit import agent_settings, quiet_load, serving
from tests.support.devserver import API_KEY
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


class BadAgentServer:
    """A tiny /agent endpoint that registers the worker, then sends garbage, then a real job offer."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[agent_pb.WorkerMessage] = asyncio.Queue()
        self.app = web.Application()
        self.app.router.add_get("/agent", self.handle)
        self.runner = web.AppRunner(self.app)
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = await ws.receive()
        register = agent_pb.WorkerMessage.FromString(first.data).register
        await ws.send_bytes(b"\xff\xfe not a protobuf")  # undecodable
        await ws.send_bytes(
            agent_pb.ServerMessage(
                register=agent_pb.RegisterWorkerResponse(worker_id="AW_bad")
            ).SerializeToString()
        )
        await ws.send_str("hello")  # text frame
        await ws.send_bytes(agent_pb.ServerMessage().SerializeToString())  # no message set
        await ws.send_bytes(b"\x0a\x05\x0a\x03")  # truncated
        await ws.send_bytes(
            agent_pb.ServerMessage(
                availability=agent_pb.AvailabilityRequest(job=agent_pb.Job(id="AJ_1", type=register.type))
            ).SerializeToString()
        )
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                parsed = agent_pb.WorkerMessage.FromString(message.data)
                if parsed.WhichOneof("message") == "availability":
                    await self.answers.put(parsed)
        return ws

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}"


@pytest.fixture
async def bad_server() -> AsyncIterator[BadAgentServer]:
    server = BadAgentServer()
    await server.start()
    try:
        yield server
    finally:
        await server.runner.cleanup()


async def _noop(ctx: JobContext) -> None:
    del ctx


async def test_garbage_from_the_server_is_logged_and_survived(
    bad_server: BadAgentServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(livekit_url=bad_server.url, api_key=API_KEY, api_secret="secret", workers=1)
    server = AgentServer(settings, load_fnc=quiet_load)
    server.rtc_session()(_noop)
    async with serving(server):
        answer = await asyncio.wait_for(bad_server.answers.get(), EVENT)
        assert answer.availability.job_id == "AJ_1"
        assert answer.availability.available
        assert server.connections[0].worker_id == "AW_bad"
    text = caplog.text
    assert "undecodable server message" in text
    assert "non-binary" in text
    assert "unknown server message (empty)" in text


async def test_unreachable_server_fails_after_max_retry(closed_port: int) -> None:
    settings = Settings(
        livekit_url=f"ws://127.0.0.1:{closed_port}",
        api_key=API_KEY,
        api_secret="secret",
        workers=1,
        max_retry=2,
    )
    server = AgentServer(settings, load_fnc=quiet_load)
    server.rtc_session()(_noop)
    with pytest.raises(
        ServerUnavailableError, match=r"cannot reach LiveKit at .* after 2 attempts"
    ) as caught:
        await asyncio.wait_for(server.run(), EVENT)
    assert caught.value.exit_code == 3
    assert "\n" not in str(caught.value)


async def test_refused_credentials_fail_at_once(devserver: DevServer) -> None:
    server = AgentServer(
        agent_settings(devserver, api_secret="wrong-secret", max_retry=16), load_fnc=quiet_load
    )
    server.rtc_session()(_noop)
    with pytest.raises(ServerUnavailableError, match=r"refused agent .*HTTP 401"):
        await asyncio.wait_for(server.run(), EVENT)
