"""Jobs survive the loss of the agent connection: a dev server restart on the same port while jobs run.

After re-registering, the daemon reports the jobs it holds with MigrateJobRequest and then sends the job
status updates it queued while disconnected; the new server attributes both to the new worker.
"""

from __future__ import annotations

import asyncio

import pytest
from livekit.protocol import agent as agent_pb
from livekit.protocol import models

from framepool.agent.job import JobContext, RunningJob
from framepool.agent.server import AgentServer
from framepool.devserver.agents import dispatcher_for
from framepool.devserver.server import DevServer
from tests.support.agentkit import LogWatch, Signal, agent_settings, quiet_load, serving
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


def two_job_server(
    devserver: DevServer, started: dict[str, Signal], finish: dict[str, asyncio.Event]
) -> AgentServer:
    """Jobs that never join a room (their simulated rooms exist nowhere) and end when the test says so."""
    server = AgentServer(agent_settings(devserver, max_retry=30), load_fnc=quiet_load)

    @server.rtc_session()
    async def entry(ctx: JobContext) -> None:
        room = ctx.job.room.name
        started[room].set(ctx.job.id)
        await finish[room].wait()

    return server


async def test_restart_migrates_live_jobs_and_delivers_queued_status() -> None:
    first = DevServer(port=0, keys={API_KEY: API_SECRET}, departure_timeout=0.5)
    await first.start()
    started = {"keep": Signal(), "end": Signal()}
    finish = {"keep": asyncio.Event(), "end": asyncio.Event()}
    server = two_job_server(first, started, finish)
    ended: dict[str, Signal] = {"keep": Signal(), "end": Signal()}
    server.job_ended.append(lambda job: ended[job.ctx.job.room.name].set(job))
    second = DevServer(port=0, keys={API_KEY: API_SECRET}, departure_timeout=0.5)
    try:
        with LogWatch("framepool.agent.connection") as agent_log:
            async with serving(server):
                [connection] = server.connections
                for room in started:
                    # Simulated jobs (as in livekit-agents' dev mode) belong to no room of the dev server, so
                    # closing its rooms on shutdown does not terminate them: only the connection is lost.
                    await connection.send(
                        agent_pb.WorkerMessage(
                            simulate_job=agent_pb.SimulateJobRequest(
                                type=agent_pb.JT_ROOM, room=models.Room(name=room)
                            )
                        )
                    )
                keep_id, end_id = await started["keep"].wait(), await started["end"].wait()
                old_worker = connection.worker_id

                await first.aclose()
                await agent_log.wait("lost the connection to LiveKit")  # the daemon knows it is disconnected
                finish["end"].set()
                job: RunningJob = await ended["end"].wait()
                assert job.status == agent_pb.JS_SUCCESS  # reported while disconnected: queued

                second.port = first.port
                await second.start()
                await asyncio.wait_for(connection.wait_registered(2), EVENT)
                await connection.round_trip()  # the migration and the queued status have been handled
                jobs = dispatcher_for(second.app, second).jobs
                assert connection.worker_id != old_worker
                assert {keep_id, end_id} <= set(jobs)
                assert jobs[keep_id].worker_id == connection.worker_id
                assert jobs[end_id].job.state.status == agent_pb.JS_SUCCESS
                assert list(server.jobs) == [keep_id]  # the live job never stopped

                # The new server can end the migrated job: its termination reaches the daemon, the status
                # comes back.
                dispatcher_for(second.app, second).terminate(jobs[keep_id], agent_pb.JSR_UNSPECIFIED)
                kept: RunningJob = await ended["keep"].wait()
                assert kept.ctx.shutdown_reason == "terminated by the server"
                await connection.round_trip()
                assert jobs[keep_id].job.state.status == agent_pb.JS_SUCCESS
    finally:
        await second.aclose()
        await first.aclose()
