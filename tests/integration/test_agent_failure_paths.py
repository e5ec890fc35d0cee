"""Failure paths of a job that no other test reaches (test process; the real SDK, pool and dev server): a
shutdown step that times out, a shutdown callback that raises, an accepted job the server never assigns.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from livekit import api, rtc
from livekit.protocol import agent as agent_pb

from framepool.agent.job import JobContext, JobRequest, RunningJob
from framepool.agent.server import AgentServer
from framepool.agent.session import DataOutput
from framepool.devserver.server import DevServer
from tests.support.agentkit import LogWatch, Signal, agent_settings, job_states, quiet_load, serving
from tests.support.sdk import joined, publish_tone, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


def ended(server: AgentServer) -> Signal:
    signal = Signal()
    server.job_ended.append(signal.set)
    return signal


async def test_a_shutdown_step_that_times_out_fails_the_job_and_the_later_steps_still_run(
    devserver: DevServer, room_name: str
) -> None:
    """A processor whose close() never returns holds the 'detach streams' step: at shutdown_timeout the
    step is cut, the job reports JS_FAILED naming it, and the steps after it (disconnect, callbacks) run."""
    server = AgentServer(agent_settings(devserver, shutdown_timeout=2.0), load_fnc=quiet_load)
    finished, callback_ran, agent_identity = ended(server), Signal(), Signal()

    @server.rtc_session()
    async def entry(ctx: JobContext) -> None:
        ctx.add_shutdown_callback(lambda: _set(callback_ran))
        await ctx.connect(auto_subscribe=False)
        ctx.attach("tests.support.procs:HangAtClose", participants=["alice"], output=DataOutput(topic="t"))
        agent_identity.set(ctx.agent.identity)

    async with serving(server), joined(devserver, "alice", room_name) as alice:
        running = asyncio.Event()
        alice.on("data_received", lambda packet: packet.topic == "t" and running.set())
        left = asyncio.Event()
        alice.on("participant_disconnected", lambda participant: left.set())
        identity = await agent_identity.wait()
        _, feeding = await publish_tone(alice)
        try:
            await asyncio.wait_for(running.wait(), EVENT)  # the stream runs on the worker
            server.jobs[next(iter(server.jobs))].ctx.shutdown("test ends the job")
            job: RunningJob = await finished.wait()
        finally:
            await stop(feeding)
        assert job.status == agent_pb.JS_FAILED
        assert job.error == "shutdown rung 'detach streams' timed out"
        await asyncio.wait_for(left.wait(), EVENT)  # the disconnect step ran after the cut one
        assert identity not in alice.remote_participants
        await callback_ran.wait()
        assert job.ctx.room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED


async def _set(signal: Signal) -> None:
    signal.set(True)


async def test_a_shutdown_callback_that_raises_is_logged_and_the_next_one_runs(
    devserver: DevServer, room_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)
    finished, second_ran = ended(server), Signal()

    async def broken(reason: str) -> None:
        raise RuntimeError(f"cannot save state ({reason})")

    @server.rtc_session()
    async def entry(ctx: JobContext) -> None:
        ctx.add_shutdown_callback(broken)
        ctx.add_shutdown_callback(lambda: _set(second_ran))
        await ctx.connect()
        ctx.shutdown("done here")

    with caplog.at_level(logging.INFO, logger="framepool.agent.job"):
        async with serving(server), joined(devserver, "alice", room_name):
            job: RunningJob = await finished.wait()
            await second_ran.wait()
    [failed] = [r for r in caplog.records if r.getMessage() == "shutdown callback failed"]
    assert failed.levelno == logging.ERROR and failed.exc_info is not None
    assert "cannot save state (done here)" in str(failed.exc_info[1])
    assert job.status in (agent_pb.JS_SUCCESS, agent_pb.JS_FAILED)  # a final status is reported either way


async def test_an_accepted_job_that_is_never_assigned_releases_its_reservation(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    """The dispatch is deleted while our request function decides: the server then assigns the accepted job
    to nobody. After assignment_timeout the daemon says so once, frees the slot it reserved, runs nothing."""
    server = AgentServer(agent_settings(devserver, assignment_timeout=1.0), load_fnc=quiet_load)
    asked, decide, ran = Signal(), asyncio.Event(), []

    async def on_request(request: JobRequest) -> None:
        asked.set(request.id)
        await decide.wait()
        await request.accept()

    @server.rtc_session(agent_name="late", on_request=on_request)
    async def entry(ctx: JobContext) -> None:
        ran.append(ctx.job.id)

    with LogWatch("framepool.agent.connection") as connection_log:
        async with serving(server):
            await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
            dispatch = await lkapi.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name="late", room=room_name)
            )
            job_id = await asked.wait()
            await lkapi.agent_dispatch.delete_dispatch(dispatch.id, room_name)
            decide.set()
            line = await connection_log.wait("accepted but not assigned")
            assert f"job {job_id} accepted but not assigned within 1.0 s" in line
            assert server.load.reserved() == 0 and not server.jobs and not ran
            assert not server.load.full()
            assert [s.status for s in await job_states(lkapi, room_name)] in ([], [agent_pb.JS_CANCELLED])
