"""max_jobs and FULL as the dev server sees them: a full daemon reports WS_FULL and is offered nothing new."""

from __future__ import annotations

import asyncio

import pytest
from livekit import api
from livekit.protocol import agent as agent_pb

from framepool.agent.job import JobContext, JobRequest, RunningJob
from framepool.agent.server import AgentServer, RequestFunction
from framepool.devserver.agents import dispatcher_for
from framepool.devserver.server import DevServer
from tests.support.agentkit import (
    LogWatch,
    Signal,
    agent_settings,
    job_states,
    quiet_load,
    serving,
)
from tests.support.agentworker import TestWorker
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


def one_job_server(devserver: DevServer, started: asyncio.Queue[str]) -> AgentServer:
    """A daemon with max_jobs=1 whose jobs run until terminated; each started job's room goes to `started`."""
    server = AgentServer(agent_settings(devserver, max_jobs=1), load_fnc=quiet_load)

    @server.rtc_session()
    async def entry(ctx: JobContext) -> None:
        await ctx.connect()
        started.put_nowait(ctx.job.room.name)
        await ctx.shutdown_requested.wait()

    return server


async def test_full_daemon_reports_ws_full_and_the_next_job_goes_elsewhere(
    devserver: DevServer, lkapi: api.LiveKitAPI
) -> None:
    started: asyncio.Queue[str] = asyncio.Queue()
    server = one_job_server(devserver, started)
    offered: list[str] = []
    server.agents[0].on_request = _recording(offered)
    with LogWatch("framepool.devserver.agents") as devserver_log:
        async with serving(server), TestWorker(devserver.url, policy="reject") as other:
            daemon_id = server.connections[0].worker_id
            await lkapi.room.create_room(api.CreateRoomRequest(name="first"))
            assert await asyncio.wait_for(started.get(), EVENT) == "first"
            await devserver_log.wait(f"worker {daemon_id}: WS_FULL")
            assert dispatcher_for(devserver.app, devserver).workers[daemon_id].status == agent_pb.WS_FULL

            other.policy = "accept"
            await lkapi.room.create_room(api.CreateRoomRequest(name="second"))
            assignment = (await other.expect("assignment")).assignment
            assert assignment.job.room.name == "second"
            assert assignment.job.id not in offered  # the FULL daemon was never asked
            assert list(server.jobs) and all(j.ctx.job.room.name == "first" for j in server.jobs.values())


async def test_two_rooms_at_once_on_a_one_job_daemon_run_one_job(
    devserver: DevServer, lkapi: api.LiveKitAPI
) -> None:
    """Both offers may arrive before FULL reaches the server: the reservation declines the second anyway."""
    started: asyncio.Queue[str] = asyncio.Queue()
    server = one_job_server(devserver, started)
    finished = Signal()
    server.job_ended.append(finished.set)
    with (
        LogWatch("framepool.devserver.dispatch") as dispatch_log,
        LogWatch("framepool.devserver.agents") as agents_log,
    ):
        async with serving(server):
            daemon_id = server.connections[0].worker_id
            await asyncio.gather(
                *(lkapi.room.create_room(api.CreateRoomRequest(name=name)) for name in ("one", "two"))
            )
            winner = await asyncio.wait_for(started.get(), EVENT)
            await dispatch_log.wait("-> JS_FAILED (no worker available)")
            [refused] = await job_states(lkapi, "two" if winner == "one" else "one")
            assert (refused.status, refused.error) == (agent_pb.JS_FAILED, "no worker available")
            assert len(server.jobs) == 1

            # Capacity comes back when the job ends: the daemon reports available and takes the next room.
            [job] = server.jobs.values()
            job.terminate("test done")
            ended: RunningJob = await finished.wait()
            assert ended.ctx.job.room.name == winner
            await agents_log.wait(f"worker {daemon_id}: WS_AVAILABLE")
            await lkapi.room.create_room(api.CreateRoomRequest(name="three"))
            assert await asyncio.wait_for(started.get(), EVENT) == "three"


def _recording(offered: list[str]) -> RequestFunction:
    """A request function that accepts every job and notes its id."""

    async def on_request(request: JobRequest) -> None:
        offered.append(request.id)
        await request.accept()

    return on_request
