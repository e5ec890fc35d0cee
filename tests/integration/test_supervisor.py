"""The Supervisor in this process against the loopback dev server: its health through every phase, the stop
ladder's rungs in order, the quick path, and nothing left behind (stop requests stand in for signals)."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from framepool.agent.job import JobContext, SharedState
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from framepool.errors import ExitStatus
from framepool.service import Phase, Supervisor
from framepool.signals import StopSignals
from tests.support.agentkit import LogWatch, Signal, agent_settings, quiet_load
from tests.support.sdk import joined
from tests.support.shm import shm_segments
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration

RUNGS = ["drain", "end jobs", "disconnect agents", "stop workers"]


def endless_agent(devserver: DevServer, started: Signal) -> AgentServer:
    server = AgentServer(agent_settings(devserver, drain_timeout=600.0), load_fnc=quiet_load)

    @server.rtc_session()
    async def run_until_terminated(ctx: JobContext) -> None:
        await ctx.connect()
        started.set()
        await asyncio.Event().wait()

    return server


async def test_health_through_the_phases_and_a_clean_stop(devserver: DevServer) -> None:
    shm_before = shm_segments()
    signals = StopSignals()  # not installed: request() is what a SIGTERM would do
    supervisor = Supervisor(endless_agent(devserver, Signal()), signals=signals)
    assert supervisor.health.phase is Phase.STARTING
    running = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(supervisor.server.registered.wait(), EVENT)
    health = supervisor.health
    assert health.ready and (health.phase, health.registered, health.pool_halted) == (
        Phase.READY,
        True,
        False,
    )
    assert supervisor.pool is not None
    pids = supervisor.pool.worker_pids()
    signals.request()
    assert await asyncio.wait_for(running, EVENT) == ExitStatus.OK  # no job: drained at once
    assert supervisor.ladder.taken == RUNGS
    assert supervisor.health.phase is Phase.STOPPED and not supervisor.health.registered
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    assert shm_segments() <= shm_before


async def test_draining_is_not_ready_and_a_second_request_takes_the_quick_path(
    devserver: DevServer, room_name: str
) -> None:
    started = Signal()
    signals = StopSignals()
    supervisor = Supervisor(endless_agent(devserver, started), signals=signals)
    running = asyncio.create_task(supervisor.run())
    with LogWatch("framepool.service") as service_log:
        await asyncio.wait_for(supervisor.server.registered.wait(), EVENT)
        async with joined(devserver, "alice", room_name):
            await started.wait()
            signals.request()
            await service_log.wait("stop ladder: drain")
            health = supervisor.health
            assert (health.phase, health.jobs, health.ready) == (Phase.DRAINING, 1, False)
            signals.request()
            assert await asyncio.wait_for(running, EVENT) == ExitStatus.INTERRUPTED
        assert "second signal: ending 1 job(s) now" in service_log.messages
    assert supervisor.ladder.taken == RUNGS


async def test_a_stop_during_a_long_prewarm_abandons_the_start_up(devserver: DevServer) -> None:
    shm_before = shm_segments()
    prewarming = Signal()

    async def load_forever(shared: SharedState) -> None:
        prewarming.set()
        await asyncio.Event().wait()

    # Only abandoning the start-up explains a prompt return: the hook would be allowed 600 s.
    server = AgentServer(agent_settings(devserver, prewarm_timeout=600.0), load_fnc=quiet_load)
    server.rtc_session(prewarm=load_forever)(_never)
    signals = StopSignals()
    supervisor = Supervisor(server, signals=signals)
    running = asyncio.create_task(supervisor.run())
    await prewarming.wait()
    assert supervisor.pool is not None
    pids = supervisor.pool.worker_pids()
    signals.request()
    assert await asyncio.wait_for(running, EVENT) == ExitStatus.OK
    assert supervisor.ladder.taken == RUNGS[1:]  # nothing to drain: no agent ever registered
    assert pids and not [pid for pid in pids if psutil.pid_exists(pid)]
    assert shm_segments() <= shm_before


async def _never(ctx: JobContext) -> None:
    raise AssertionError("no job may start")
