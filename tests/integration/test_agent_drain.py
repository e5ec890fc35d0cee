"""SIGTERM drain of a real `framepool start` process.

A running job finishes after SIGTERM and the daemon exits 0; the dev server sees the daemon go FULL and
offers it nothing new; a second SIGTERM takes the quick path (exit 130); a drain that times out ends the job
through its shutdown ladder (exit 1). Every case checks that the worker processes are gone and that nothing
is left in /dev/shm.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest
from livekit import api, rtc
from livekit.protocol import agent as agent_pb

from framepool.devserver.agents import dispatcher_for
from framepool.devserver.server import DevServer
from framepool.errors import ExitStatus
from tests.support.agentkit import LogWatch, job_states
from tests.support.daemon import ROOT, assert_gone, exit_status, worker_pids
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.sdk import joined
from tests.support.shm import shm_segments
from tests.support.signals import signal_until_exit
from tests.support.timeouts import EVENT, PROCESS

pytestmark = pytest.mark.integration


async def start_daemon(
    devserver: DevServer, target: str, *extra: str, **settings: str
) -> asyncio.subprocess.Process:
    """`framepool start target`; `settings` become FRAMEPOOL_<NAME> environment variables."""
    env = {
        **os.environ,
        "LIVEKIT_URL": devserver.url,
        "LIVEKIT_API_KEY": API_KEY,
        "LIVEKIT_API_SECRET": API_SECRET,
        "FRAMEPOOL_WORKERS": "1",
        "FRAMEPOOL_STATUS_INTERVAL": "0.5",
        "FRAMEPOOL_LOG_FORMAT": "json",
    }
    env.update({f"FRAMEPOOL_{name.upper()}": value for name, value in settings.items()})
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framepool.cli",
        "start",
        target,
        *extra,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def start_config(config: Path, env: dict[str, str] | None = None) -> tuple[int | None, bytes]:
    """`framepool start --config config` to its end: its exit status and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framepool.cli", "start", "--config", str(config),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), PROCESS)
    return process.returncode, err


async def log_line(process: asyncio.subprocess.Process, fragment: str, seen: list[str]) -> dict[str, object]:
    """The next JSON log record of `process` whose message contains `fragment`."""
    assert process.stderr is not None
    while True:
        raw = await process.stderr.readline()
        if not raw:
            raise AssertionError(f"daemon exited before logging {fragment!r}:\n" + "".join(seen[-30:]))
        line = raw.decode(errors="replace")
        seen.append(line)
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if fragment in str(record.get("message", "")):
            return dict(record)


async def test_sigterm_lets_a_running_job_finish_then_exits_zero(
    devserver: DevServer, room_name: str
) -> None:
    shm_before = shm_segments()
    process = await start_daemon(devserver, "tests.support.agent_apps:drain_server")
    seen: list[str] = []
    try:
        await asyncio.wait_for(log_line(process, "registered 1 agent", seen), PROCESS)
        async with joined(devserver, "alice", room_name) as alice:
            statuses: asyncio.Queue[bytes] = asyncio.Queue()
            alice.on("data_received", lambda packet: statuses.put_nowait(packet.data))
            assert await asyncio.wait_for(statuses.get(), EVENT) == b"running"
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(log_line(process, "draining", seen), PROCESS)
            assert process.returncode is None  # the job holds the daemon
            await alice.local_participant.publish_data(b"finish", reliable=True)
            assert await asyncio.wait_for(statuses.get(), EVENT) == b"finished"
            await asyncio.wait_for(log_line(process, "job ended: JS_SUCCESS", seen), PROCESS)
        assert process.stderr is not None
        rest = await asyncio.wait_for(process.stderr.read(), PROCESS)
        assert await asyncio.wait_for(process.wait(), PROCESS) == 0, "".join(seen) + rest.decode()
        assert shm_segments() <= shm_before
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def running_job(alice: rtc.Room) -> None:
    """Until the endless agent's job in alice's room says it runs."""
    statuses: asyncio.Queue[bytes] = asyncio.Queue()
    alice.on("data_received", lambda packet: statuses.put_nowait(packet.data))
    assert await asyncio.wait_for(statuses.get(), EVENT) == b"running"


async def test_second_sigterm_takes_the_quick_path(devserver: DevServer, room_name: str) -> None:
    shm_before = shm_segments()
    # A drain this long cannot end inside the test: only the quick path explains the exit. The threshold
    # keeps a busy test machine from making the daemon FULL before the drain does.
    process = await start_daemon(
        devserver, "tests.support.agent_apps:endless_server", drain_timeout="600", load_threshold="1"
    )
    seen: list[str] = []
    try:
        with LogWatch("framepool.devserver.agents") as devserver_log:
            await asyncio.wait_for(log_line(process, "registered 1 agent", seen), PROCESS)
            pids = worker_pids(process)
            async with joined(devserver, "alice", room_name) as alice:
                await running_job(alice)
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(log_line(process, "draining", seen), PROCESS)
                await devserver_log.wait(": WS_FULL")
                [worker] = dispatcher_for(devserver.app, devserver).workers.values()
                assert (worker.status, worker.draining) == (agent_pb.WS_FULL, True)
                await assert_new_job_refused(devserver, f"{room_name}-late")
                assert process.returncode is None  # the endless job holds the daemon
                # The second signal and more after it, as from a service manager that keeps asking.
                storm = asyncio.create_task(signal_until_exit(process, (signal.SIGTERM,), interval=0.005))
                await asyncio.wait_for(log_line(process, "second signal", seen), PROCESS)
            status, logged = await exit_status(process, seen)
            assert (await storm)[0] == status
        assert status == 130, logged
        assert "job ended" in logged
        await assert_gone(pids)
        assert shm_segments() <= shm_before
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def assert_new_job_refused(devserver: DevServer, room: str) -> None:
    """A room created while the only worker is FULL gets no agent: its job fails with "no worker
    available"."""
    async with api.LiveKitAPI(devserver.http_url, API_KEY, API_SECRET) as lkapi:
        await lkapi.room.create_room(api.CreateRoomRequest(name=room))
        [state] = await job_states(lkapi, room)
    assert (state.status, state.error) == (agent_pb.JS_FAILED, "no worker available")


async def test_drain_timeout_ends_the_running_job_and_exits_1(devserver: DevServer, room_name: str) -> None:
    shm_before = shm_segments()
    process = await start_daemon(devserver, "tests.support.agent_apps:endless_server", drain_timeout="1")
    seen: list[str] = []
    try:
        await asyncio.wait_for(log_line(process, "registered 1 agent", seen), PROCESS)
        pids = worker_pids(process)
        async with joined(devserver, "alice", room_name) as alice:
            await running_job(alice)
            agent_left = asyncio.get_running_loop().create_future()
            alice.on(
                "participant_disconnected", lambda p: agent_left.done() or agent_left.set_result(p.identity)
            )
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(log_line(process, "drain timed out with 1 job", seen), PROCESS)
            record = await asyncio.wait_for(log_line(process, "job ended", seen), PROCESS)
            assert str(await asyncio.wait_for(agent_left, EVENT)).startswith("agent-")
        status, logged = await exit_status(process, seen)
        assert status == 1, logged
        assert "job shutting down: daemon shutting down" in logged
        assert record["message"] == "job ended: JS_SUCCESS"
        await assert_gone(pids)
        assert shm_segments() <= shm_before
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_start_without_credentials_is_one_line_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "FRAMEPOOL_"))}
    config = tmp_path / "agents.toml"
    config.write_text('[[agents]]\naudio = ["audio-level"]\n')
    returncode, err = await start_config(config, env)
    assert returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "missing LiveKit credentials" in lines[0], err.decode()


async def test_start_without_agents_is_a_clear_error(tmp_path: Path, devserver: DevServer) -> None:
    config = tmp_path / "empty.toml"
    config.write_text(
        f'livekit_url = "{devserver.url}"\napi_key = "{API_KEY}"\napi_secret = "{API_SECRET}"\n'
    )
    returncode, err = await start_config(config)
    assert returncode == 2
    assert "no agents configured" in err.decode()


async def test_start_against_an_unreachable_server_exits_3(tmp_path: Path, closed_port: int) -> None:
    config = tmp_path / "agents.toml"
    config.write_text(
        f'livekit_url = "ws://127.0.0.1:{closed_port}"\napi_key = "k"\napi_secret = "s"\nmax_retry = 1\n'
        'workers = 1\n[[agents]]\naudio = ["audio-level"]\n'
    )
    returncode, err = await start_config(config)
    assert returncode == 3, err.decode()
    assert f"framepool: cannot reach LiveKit at ws://127.0.0.1:{closed_port}" in err.decode()
    assert "connection refused by 127.0.0.1:" in err.decode()


async def test_a_pool_halting_under_a_running_daemon_exits_4(devserver: DevServer) -> None:
    """Registered and serving, the daemon loses its worker and the replacement cannot start (its prewarm
    kills it every time): the pool halts instead of respawning forever and the daemon exits with
    POOL_HALTED (4), which systemd's RestartPreventExitStatus keeps from restarting in a loop."""
    markers_before = set(glob.glob("/tmp/framepool-test-prewarm-*"))
    process = await start_daemon(
        devserver,
        "tests.support.agent_apps:endless_server",
        prewarm="tests.support.procs:prewarm_first_only",
        crash_loop_limit="2",
        restart_backoff="0.01",
    )
    seen: list[str] = []
    try:
        await asyncio.wait_for(log_line(process, "registered 1 agent", seen), PROCESS)
        # Forked by the forkserver, the daemon's child: the worker is the daemon's grandchild.
        [worker] = [
            p.pid for p in psutil.Process(process.pid).children(recursive=True) if p.ppid() != process.pid
        ]
        os.kill(worker, signal.SIGKILL)
        status, log = await exit_status(process, seen)
        assert status == ExitStatus.POOL_HALTED, log
        assert "worker pool halted" in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for marker in set(glob.glob("/tmp/framepool-test-prewarm-*")) - markers_before:
            os.unlink(marker)
