"""The agent server's dispatch and job lifecycle against the loopback dev server (real SDK, real livekit-api,
real pool)."""

from __future__ import annotations

import asyncio

import pytest
from livekit import api, rtc
from livekit.protocol import agent as agent_pb

from framepool.agent.job import JobContext, JobRequest, RunningJob
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from tests.support.agentkit import Signal, agent_settings, job_states, quiet_load, serving
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.sdk import joined
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


def new_server(devserver: DevServer, **overrides: object) -> AgentServer:
    return AgentServer(agent_settings(devserver, **overrides), load_fnc=quiet_load)


def ended(server: AgentServer) -> Signal:
    signal = Signal()
    server.job_ended.append(signal.set)
    return signal


async def settled(server: AgentServer) -> None:
    """Every status sent so far has been handled by the server (a ping round trip on each connection)."""
    await asyncio.gather(*(d.round_trip() for d in server.connections))


async def test_automatic_dispatch_into_a_new_room(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    server = new_server(devserver)
    joined_room = Signal()

    @server.rtc_session()
    async def entry(ctx: JobContext) -> None:
        await ctx.connect()
        participant = await ctx.wait_for_participant()
        joined_room.set((ctx.room.name, participant.identity, ctx.agent.identity))

    async with serving(server), joined(devserver, "alice", room_name) as alice:
        room, who, agent_identity = await joined_room.wait()
        assert (room, who) == (room_name, "alice")
        assert agent_identity in alice.remote_participants
        await settled(server)
        assert [s.status for s in await job_states(lkapi, room_name)] == [agent_pb.JS_RUNNING]


async def test_explicit_dispatch_by_agent_name(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    server = new_server(devserver)
    ran = Signal()

    @server.rtc_session(agent_name="alpha")
    async def alpha(ctx: JobContext) -> None:
        ran.set((ctx.job.agent_name, ctx.job.metadata))

    async with serving(server):
        await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="alpha", room=room_name, metadata="hello")
        )
        assert await ran.wait() == ("alpha", "hello")


async def test_two_agent_names_in_one_daemon(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    server = new_server(devserver)
    seen: dict[str, Signal] = {"alpha": Signal(), "beta": Signal()}

    async def entry(ctx: JobContext) -> None:
        await ctx.connect()
        seen[ctx.job.agent_name].set(ctx.agent.identity)
        await ctx.shutdown_requested.wait()

    server.rtc_session(agent_name="alpha")(entry)
    server.rtc_session(agent_name="beta")(entry)
    async with serving(server):
        assert len({d.worker_id for d in server.connections}) == 2
        await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
        for name in seen:
            await lkapi.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name=name, room=room_name)
            )
        identities = [await seen[name].wait() for name in seen]
        assert len(set(identities)) == 2
        assert len(server.jobs) == 2


@pytest.mark.parametrize(
    ("terminate", "expected"), [(False, agent_pb.JS_FAILED), (True, agent_pb.JS_CANCELLED)]
)
async def test_reject(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str, terminate: bool, expected: int
) -> None:
    server = new_server(devserver)
    asked = Signal()

    async def on_request(request: JobRequest) -> None:
        await request.reject(terminate=terminate)
        asked.set(request.id)

    ran: list[str] = []

    @server.rtc_session(agent_name="picky", on_request=on_request)
    async def entry(ctx: JobContext) -> None:
        ran.append(ctx.job.id)  # recorded, not raised: an entrypoint error would also end in JS_FAILED

    async with serving(server):
        await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="picky", room=room_name)
        )
        await asked.wait()
        await settled(server)
        [state] = await job_states(lkapi, room_name)
        # The refusal itself: the server assigned the job to no worker; rejected without terminate, it ran
        # out of workers to offer it to; with terminate, it was cancelled without being offered further.
        assert state.status == expected
        assert state.worker_id == "" and state.participant_identity == ""
        assert state.error == ("" if terminate else "no worker available")
        assert not ran and not server.jobs


async def test_request_function_that_raises_means_unavailable(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    server = new_server(devserver)
    asked = Signal()

    async def on_request(request: JobRequest) -> None:
        asked.set()
        raise RuntimeError("cannot decide")

    ran: list[str] = []

    async def entry(ctx: JobContext) -> None:
        ran.append(ctx.job.id)  # recorded, not raised: an entrypoint error would also end in JS_FAILED

    server.rtc_session(agent_name="broken", on_request=on_request)(entry)
    async with serving(server):
        await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="broken", room=room_name)
        )
        await asked.wait()
        await settled(server)
        [state] = await job_states(lkapi, room_name)
        # Refused (answered unavailable), so never assigned: not an accepted job whose entrypoint failed.
        assert state.status == agent_pb.JS_FAILED and state.error == "no worker available"
        assert state.worker_id == "" and not ran and not server.jobs


async def test_entrypoint_error_reports_failed_with_the_text(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    server = new_server(devserver)
    finished = ended(server)

    @server.rtc_session(agent_name="fragile")
    async def entry(ctx: JobContext) -> None:
        await ctx.connect()
        raise ValueError("model file missing")

    async with serving(server):
        await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="fragile", room=room_name)
        )
        job: RunningJob = await finished.wait()
        assert job.status == agent_pb.JS_FAILED
        await settled(server)
        [state] = await job_states(lkapi, room_name)
        assert state.status == agent_pb.JS_FAILED
        assert "ValueError: model file missing" in state.error


async def test_delete_dispatch_terminates_and_cleans_up(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    server = new_server(devserver)
    connected, callback = Signal(), Signal()
    finished = ended(server)

    @server.rtc_session(agent_name="worker")
    async def entry(ctx: JobContext) -> None:
        async def on_shutdown(reason: str) -> None:
            callback.set(reason)

        ctx.add_shutdown_callback(on_shutdown)
        await ctx.connect()
        connected.set(ctx.agent.identity)

    async with serving(server), joined(devserver, "watcher", room_name) as watcher:
        dispatch = await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="worker", room=room_name)
        )
        identity = await connected.wait()
        left = asyncio.get_running_loop().create_future()
        watcher.on(
            "participant_disconnected",
            lambda p: left.done() or p.identity != identity or left.set_result(p.identity),
        )
        await lkapi.agent_dispatch.delete_dispatch(dispatch.id, room_name)
        job: RunningJob = await finished.wait()
        assert job.status == agent_pb.JS_SUCCESS
        assert await callback.wait() == "terminated by the server"
        assert await asyncio.wait_for(left, EVENT) == identity
        assert job.ctx.room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED
        assert not server.jobs


async def test_ctx_shutdown_ends_the_job_cleanly(devserver: DevServer, room_name: str) -> None:
    server = new_server(devserver)
    finished = ended(server)

    @server.rtc_session()
    async def entry(ctx: JobContext) -> None:
        await ctx.connect()
        ctx.shutdown("done here")

    async with serving(server), joined(devserver, "alice", room_name):
        job: RunningJob = await finished.wait()
        assert (job.status, job.ctx.shutdown_reason) == (agent_pb.JS_SUCCESS, "done here")


async def test_devserver_restart_reregisters_and_takes_new_jobs(room_name: str) -> None:
    first = DevServer(port=0, keys={API_KEY: API_SECRET}, departure_timeout=0.5)
    await first.start()
    port = first.port
    server = AgentServer(agent_settings(first, max_retry=30), load_fnc=quiet_load)
    ran = Signal()

    @server.rtc_session()
    async def entry(ctx: JobContext) -> None:
        ran.set(ctx.job.room.name)

    try:
        async with serving(server):
            [connection] = server.connections
            await first.aclose()
            second = DevServer(port=port, keys={API_KEY: API_SECRET}, departure_timeout=0.5)
            await second.start()
            try:
                await asyncio.wait_for(connection.wait_registered(2), EVENT)
                async with api.LiveKitAPI(second.http_url, API_KEY, API_SECRET) as lkapi:
                    await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
                assert await ran.wait() == room_name
            finally:
                await second.aclose()
    finally:
        await first.aclose()
