"""/metrics of a Supervisor in this process with media flowing through the dev server: a worker killed with
SIGKILL and the job's end decrease no total, frames counters grow, the job's figures are there, promtool
accepts every scrape, and no room, job, participant or track reaches a label."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from livekit import api

from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from framepool.errors import ExitStatus
from framepool.ops.metrics import Metrics
from framepool.service import Supervisor
from framepool.signals import StopSignals
from tests.integration.test_agent_media import data_messages
from tests.support.agentkit import Signal, agent_settings, quiet_load
from tests.support.metrics import Key, promtool_problems, samples, totals, value
from tests.support.sdk import joined, publish_tone, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


def levels_agent(devserver: DevServer, attached: Signal) -> AgentServer:
    server = AgentServer(agent_settings(devserver, ping_interval=0.2), load_fnc=quiet_load)

    @server.rtc_session(agent_name="levels")
    async def levels(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        ctx.attach("audio-level(window_ms=100)", participants=["alice"], output=DataOutput(topic="levels"))
        attached.set(ctx)

    return server


def never_decreased(before: dict[Key, float], after: dict[Key, float]) -> list[str]:
    return [
        f"{key}: {value} -> {after.get(key)}" for key, value in before.items() if after.get(key, -1) < value
    ]


async def results_from_a_new_worker(
    supervisor: Supervisor, results: asyncio.Queue[dict[str, object]], victim: int
) -> None:
    assert supervisor.pool is not None
    while True:  # results produced after the restart, by another process
        await asyncio.wait_for(results.get(), EVENT)
        pids = supervisor.pool.worker_pids()
        if pids and victim not in pids:
            break
    await asyncio.wait_for(results.get(), EVENT)


async def test_counters_survive_a_worker_kill_and_the_end_of_the_job(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    attached = Signal()
    signals = StopSignals()
    supervisor = Supervisor(levels_agent(devserver, attached), signals=signals)
    metrics = Metrics(supervisor)
    running = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(supervisor.server.registered.wait(), EVENT)
    ctx: JobContext
    async with joined(devserver, "bob", room_name) as bob:
        results = data_messages(bob, "levels")
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="levels", room=room_name)
        )
        async with joined(devserver, "alice", room_name) as alice:
            ctx = await attached.wait()
            _, feeding = await publish_tone(alice)
            try:
                for _ in range(3):
                    await asyncio.wait_for(results.get(), EVENT)
                before = metrics.render()
                assert supervisor.pool is not None
                [victim] = supervisor.pool.worker_pids()
                os.kill(victim, signal.SIGKILL)
                await results_from_a_new_worker(supervisor, results, victim)
                after = metrics.render()
            finally:
                await stop(feeding)
    signals.request()
    signals.request()  # the quick path: the job ends now
    assert await asyncio.wait_for(running, EVENT) in (ExitStatus.OK, ExitStatus.INTERRUPTED)
    ended = metrics.render()

    assert never_decreased(totals(before), totals(after)) == []
    assert never_decreased(totals(after), totals(ended)) == []  # detached streams and ended jobs are kept
    for text in (before, after, ended):
        assert promtool_problems(text) == ""
        for secret in (room_name, ctx.job.id, "alice", "bob", supervisor.settings.api_secret):
            assert secret.encode() not in text
    assert value(before, "framepool_frames_in_total", kind="audio") > 0
    assert value(after, "framepool_frames_in_total", kind="audio") > value(
        before, "framepool_frames_in_total"
    )
    assert value(after, "framepool_frames_processed_total") > value(
        before, "framepool_frames_processed_total"
    )
    assert value(after, "framepool_worker_restarts_total", reason="signal") == 1
    assert value(after, "framepool_results_total", kind="audio") > value(before, "framepool_results_total")
    assert value(before, "framepool_jobs_active", agent="levels") == 1
    assert value(before, "framepool_ready") == 1 and value(ended, "framepool_ready") == 0
    assert value(before, "framepool_agent_connected", agent="levels", job_type="JT_ROOM") == 1
    assert value(before, "framepool_job_requests_total", decision="accepted") == 1
    assert value(before, "framepool_dispatch_to_first_frame_seconds_count") == 1
    assert 0 < value(before, "framepool_dispatch_to_first_frame_seconds_sum") < EVENT
    assert value(after, "framepool_frame_processing_seconds_count") > 0
    assert value(after, "framepool_result_latency_seconds_count") > 0
    assert value(before, "framepool_worker_pss_bytes", worker="0") > 0
    assert value(after, "framepool_worker_cpu_seconds_total", worker="0") > 0
    assert value(ended, "framepool_jobs_total", agent="levels") == 1
    assert value(ended, "framepool_data_messages_out_total") >= 0
    assert value(ended, "framepool_results_published_total", outcome="sent") > 0
    series = {sample for sample, _labels in samples(after)}
    assert len(samples(after)) < 40 * len(series)  # a handful of series per family, whatever the traffic
