"""The per-agent prewarm hook: once per agent in the supervisor, before any job; failures are one clear
line."""

from __future__ import annotations

import asyncio
import os
import sys

import psutil
import pytest
from livekit import api

from framepool.agent.job import JobContext, SharedState
from framepool.agent.server import AgentServer
from framepool.devserver.agents import dispatcher_for
from framepool.devserver.server import DevServer
from framepool.errors import FramepoolError
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.daemon import ROOT
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.shm import shm_segments
from tests.support.timeouts import EVENT, PROCESS

pytestmark = pytest.mark.integration


async def test_prewarm_runs_once_per_agent_before_any_job(devserver: DevServer, room_name: str) -> None:
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)
    calls: list[tuple[str, bool]] = []
    seen: dict[str, Signal] = {"alpha-1": Signal(), "alpha-2": Signal(), "beta-1": Signal()}

    async def load_model(shared: SharedState) -> None:
        # Nothing may have registered yet: a job must never meet an agent that is not prewarmed.
        calls.append((shared.agent_name, any(d.registered.is_set() for d in server.connections)))
        shared.userdata["model"] = object()

    async def entry(ctx: JobContext) -> None:
        seen[f"{ctx.job.agent_name}-{ctx.job.metadata}"].set(ctx.shared.userdata["model"])

    server.rtc_session(agent_name="alpha", prewarm=load_model)(entry)
    server.rtc_session(agent_name="beta", prewarm=load_model)(entry)
    async with serving(server), api.LiveKitAPI(devserver.http_url, API_KEY, API_SECRET) as lkapi:
        await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
        for name, metadata in (("alpha", "1"), ("alpha", "2"), ("beta", "1")):
            await lkapi.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name=name, room=room_name, metadata=metadata)
            )
        models = {key: await signal.wait() for key, signal in seen.items()}
    assert sorted(calls) == [("alpha", False), ("beta", False)]
    assert models["alpha-1"] is models["alpha-2"]  # one prewarm, shared by every job of the agent
    assert models["alpha-1"] is not models["beta-1"]


async def test_failing_prewarm_stops_the_pool_and_registers_nothing(devserver: DevServer) -> None:
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)
    pids: list[int] = []

    async def broken(shared: SharedState) -> None:
        assert server.pool is not None
        pids.extend(server.pool.worker_pids())
        raise ValueError("weights are corrupt")

    server.rtc_session(agent_name="detector", prewarm=broken)(_never)
    with pytest.raises(
        FramepoolError, match=r"^agent detector: prewarm failed: ValueError: weights are corrupt$"
    ):
        await asyncio.wait_for(server.run(), EVENT)
    assert pids and not any(psutil.pid_exists(pid) for pid in pids)
    assert server.pool is None
    assert not dispatcher_for(devserver.app, devserver).workers


async def test_prewarm_that_overruns_prewarm_timeout_is_an_error(devserver: DevServer) -> None:
    server = AgentServer(agent_settings(devserver, prewarm_timeout=0.2), load_fnc=quiet_load)

    async def stuck(shared: SharedState) -> None:
        await asyncio.Event().wait()

    server.rtc_session(prewarm=stuck)(_never)
    with pytest.raises(
        FramepoolError,
        match=r"^agent \(automatic\): prewarm did not finish within 0.2 s \(prewarm_timeout\)$",
    ):
        await asyncio.wait_for(server.run(), EVENT)
    assert server.pool is None


async def test_start_with_a_failing_prewarm_is_one_line(devserver: DevServer) -> None:
    shm_before = shm_segments()
    env = {
        **os.environ,
        "LIVEKIT_URL": devserver.url,
        "LIVEKIT_API_KEY": API_KEY,
        "LIVEKIT_API_SECRET": API_SECRET,
        "FRAMEPOOL_WORKERS": "1",
        "FRAMEPOOL_LOG_LEVEL": "warning",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framepool.cli",
        "start",
        "tests.support.agent_apps:broken_prewarm_server",
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), PROCESS)
    lines = err.decode().strip().splitlines()
    assert process.returncode == 1, err.decode()
    assert lines == ["framepool: agent detector: prewarm failed: FileNotFoundError: model.onnx"]
    assert shm_segments() <= shm_before


async def _never(ctx: JobContext) -> None:
    raise AssertionError("must not run")
