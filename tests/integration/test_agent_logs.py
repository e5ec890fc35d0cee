"""A normal job, from dispatch to its end, logs nothing an operator would alert on, and its streams' figures
are fields of the record rather than a repr in the message (test process; the real SDK, pool and dev server).
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from livekit import api
from livekit.protocol import agent as agent_pb

from framepool import sdklog
from framepool.agent.job import JobContext, RunningJob
from framepool.agent.server import AgentServer
from framepool.agent.session import DataOutput
from framepool.devserver.server import DevServer
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.sdk import joined, publish_tone, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


async def test_a_normal_job_end_logs_no_error_and_stream_stats_as_fields(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    sdklog.install()  # as setup_logging does in the daemon
    caplog.set_level(logging.INFO)  # every logger, the SDK's included, at INFO: nothing hidden by levels
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)
    attached, finished = Signal(), Signal()
    server.job_ended.append(finished.set)

    @server.rtc_session()
    async def levels(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        ctx.attach("audio-level(window_ms=100)", participants=["alice"], output=DataOutput(topic="levels"))
        attached.set(ctx)

    async with serving(server), joined(devserver, "alice", room_name) as alice:
        got_result = asyncio.Event()
        alice.on("data_received", lambda packet: packet.topic == "levels" and got_result.set())
        await attached.wait()
        _, feeding = await publish_tone(alice)
        try:
            await asyncio.wait_for(got_result.wait(), EVENT)
        finally:
            await stop(feeding)
        await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))  # the server ends the job
        job: RunningJob = await finished.wait()
    assert job.status == agent_pb.JS_SUCCESS

    loud = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert not loud
    [detached] = [
        r for r in caplog.records if r.getMessage().startswith("feed ") and "detached" in r.getMessage()
    ]
    stats = detached.stream_stats  # type: ignore[attr-defined]
    assert isinstance(stats, dict) and stats["processed"] > 0 and stats["results"] > 0
    assert "StreamStats(" not in detached.getMessage() and "{" not in detached.getMessage()
