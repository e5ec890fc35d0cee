"""/livez, /readyz and /status of a real `framepool start` against the loopback dev server, and the
`framepool health` command that probes them.

Readiness answers 503 with a reason while the daemon starts, then 200 once its agent is registered; during
a drain readiness is 503 while liveness stays 200; liveness is 503 once LiveKit retries are exhausted; /status
has every field of the documented schema with the right types, idle and while a job's audio flows;
http_port = 0 serves nothing; a port in use is one line and exit 2.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from framepool.devserver.server import DevServer
from framepool.errors import ExitStatus
from tests.support.daemon import ROOT, exit_status, logged, read_log
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.sdk import joined, publish_tone, stop
from tests.support.timeouts import EVENT, PROCESS

pytestmark = pytest.mark.integration

AUDIO_AGENT = '[[agents]]\naudio = ["audio-level"]\n'
POLL = 0.02  # seconds between probes while waiting for a state a probe must see

# The /status schema the dashboard and the metrics exporter read (every field, always present).
SCHEMA: dict[str, Any] = {
    "version": str, "pid": int, "started_at": float, "uptime_s": float, "phase": str, "live": bool,
    "ready": bool, "live_reason": str, "ready_reason": str, "loop": {"lag_ms": float, "stalls": int},
    "agents": [{"name": str, "state": str, "worker_id": str, "load": float, "status": str, "jobs": int,
                "reconnects": int}],
    "jobs": [{"id": str, "agent": str, "room": str, "started_at": float, "streams": int}],
    "workers": [{"index": int, "pid": (int, None), "cpu": (int, None), "state": str, "pss_bytes": int,
                 "cpu_seconds": float, "streams": int, "restarts": int}],
    "streams": [{"id": str, "job": str, "room": str, "participant": str, "track": str, "kind": str,
                 "worker": (int, None), "frames_in": int, "frames_out": int, "drops": {str: int},
                 "ring_occupancy": float}],
    "totals": {"frames_in": int, "frames_out": int, "drops": {str: int}, "results": int},
    "data": {str: int},
}  # fmt: skip


def assert_schema(value: Any, schema: Any, path: str = "$") -> None:
    """`value` has every field of `schema` with its type (a float field may hold an integral JSON number)."""
    if isinstance(schema, dict) and len(schema) == 1 and next(iter(schema)) is str:
        assert isinstance(value, dict), path
        for key, item in value.items():
            assert isinstance(key, str), path
            assert_schema(item, schema[str], f"{path}.{key}")
    elif isinstance(schema, dict):
        assert isinstance(value, dict), path
        missing = sorted(set(schema) - set(value))
        assert not missing, f"{path} lacks {missing}"
        for key, item in schema.items():
            assert_schema(value[key], item, f"{path}.{key}")
    elif isinstance(schema, list):
        assert isinstance(value, list), path
        for index, item in enumerate(value):
            assert_schema(item, schema[0], f"{path}[{index}]")
    else:
        allowed = schema if isinstance(schema, tuple) else (schema,)
        kinds = tuple(type(None) if kind is None else kind for kind in allowed)
        kinds += (int,) if float in kinds else ()
        assert isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds), (
            f"{path} = {value!r}, expected {allowed}"
        )


def free_port() -> int:
    """A port the kernel just handed out and took back. The daemon binds it a moment later; the kernel
    hands ephemeral ports out in turn, so another process taking this one in between is not a real risk
    (unlike a fixed port, which concurrent test runs would share)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_daemon(
    devserver: DevServer, tmp_path: Path, *target: str, **settings: str
) -> asyncio.subprocess.Process:
    """`framepool start` (the config's audio agent unless a module:server is given), JSON log on stderr."""
    config = tmp_path / "framepool.toml"
    config.write_text(AUDIO_AGENT)
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
        sys.executable, "-m", "framepool.cli", "start", *(target or ("--config", str(config))),
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def probe(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as response:
        return response.status, await response.text()


async def until_answer(
    http: aiohttp.ClientSession, url: str, status: int, seen: list[tuple[int, str]] | None = None
) -> str:
    """Probe `url` until it answers `status` (refused connections: not listening yet); its body. Every
    answer on the way is appended to `seen`."""
    while True:
        try:
            answer = await probe(http, url)
        except aiohttp.ClientConnectorError:
            answer = None
        if answer is not None:
            if seen is not None:
                seen.append(answer)
            if answer[0] == status:
                return answer[1]
        await asyncio.sleep(POLL)


async def health(*args: str, **env: str) -> tuple[int, str, str]:
    """`framepool health ARGS`: exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framepool.cli", "health", *args, cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), PROCESS)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def messages(log: str) -> list[str]:
    return [json.loads(line)["message"] for line in log.splitlines() if line.startswith("{")]


async def stop_daemon(process: asyncio.subprocess.Process, seen: list[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    return await exit_status(process, seen)


async def test_readiness_503_while_starting_then_200_and_an_idle_status(
    devserver: DevServer, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = await start_daemon(devserver, tmp_path, http_port=str(port))
    seen: list[str] = []
    arrived = asyncio.Event()
    reading = asyncio.ensure_future(read_log(process, seen, arrived))
    try:
        async with aiohttp.ClientSession() as http:
            answers: list[tuple[int, str]] = []
            await asyncio.wait_for(until_answer(http, f"{base}/readyz", 200, answers), PROCESS)
            not_ready = [body for status, body in answers if status == 503]
            assert not_ready, answers  # the workers cannot be up the moment the port is
            assert all(body.startswith("not ready: ") and body.count("\n") == 1 for body in not_ready)
            assert answers[-1] == (200, "ready\n")
            assert await probe(http, f"{base}/livez") == (200, "live\n")
            assert await probe(http, f"{base}/") == (200, "live\n")
            async with http.get(f"{base}/status") as response:
                assert response.status == 200 and response.content_type == "application/json"
                status = await response.json()
        assert_schema(status, SCHEMA)
        assert (status["phase"], status["live"], status["ready"]) == ("ready", True, True)
        assert (status["live_reason"], status["ready_reason"], status["pid"]) == ("", "", process.pid)
        [agent] = status["agents"]
        assert (agent["state"], agent["status"], agent["jobs"]) == ("registered", "available", 0)
        assert agent["worker_id"].startswith("AW_")
        [worker] = status["workers"]
        assert worker["state"] == "ready" and worker["pid"] in [
            c.pid for c in psutil.Process(process.pid).children(recursive=True)
        ]
        assert (status["jobs"], status["streams"], status["totals"]["frames_in"]) == ([], [], 0)
        assert set(status["data"]) >= {"intake_received", "spool_appended", "room_outputs_sent"}
        assert (await health("--url", f"{base}/livez"))[:2] == (0, "live\n")
        assert (await health(FRAMEPOOL_HTTP_PORT=str(port)))[:2] == (0, "live\n")  # URL from the settings
        reading.cancel()
        code, log = await stop_daemon(process, seen)
        assert code == ExitStatus.OK, log
        said = messages(log)
        assert said.count("readiness: ready") == 1, said  # a transition, not every probe
        assert said.count("readiness: not ready: starting: workers not ready yet") == 1, said
        assert API_SECRET not in json.dumps(status) and f"={API_SECRET}" not in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_job_in_status_then_a_drain_is_not_ready_but_live(
    devserver: DevServer, tmp_path: Path, room_name: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = await start_daemon(devserver, tmp_path, http_port=str(port), load_threshold="1")
    seen: list[str] = []
    arrived = asyncio.Event()
    reading = asyncio.ensure_future(read_log(process, seen, arrived))
    try:
        async with aiohttp.ClientSession() as http:
            await asyncio.wait_for(until_answer(http, f"{base}/readyz", 200), PROCESS)
            async with joined(devserver, "alice", room_name) as alice:
                _, tone = await publish_tone(alice)
                status = await asyncio.wait_for(flowing(http, f"{base}/status"), PROCESS)
                assert_schema(status, SCHEMA)
                [job], [stream], [worker] = status["jobs"], status["streams"], status["workers"]
                assert (job["room"], job["streams"], stream["job"]) == (room_name, 1, job["id"])
                assert (stream["room"], stream["participant"], stream["kind"]) == (
                    room_name,
                    "alice",
                    "audio",
                )
                assert stream["worker"] == worker["index"] and worker["streams"] == 1
                assert stream["frames_in"] >= stream["frames_out"] > 0 and 0 <= stream["ring_occupancy"] <= 1
                assert set(stream["drops"]) == {"ring_full", "skipped", "worker_lost"}
                assert worker["pss_bytes"] > 0 and worker["cpu_seconds"] > 0
                assert status["agents"][0]["jobs"] == 1 and status["totals"]["frames_out"] > 0
                process.send_signal(signal.SIGTERM)
                body = await asyncio.wait_for(until_answer(http, f"{base}/readyz", 503), PROCESS)
                assert body == "not ready: draining: 1 job(s) finishing, no new jobs\n"
                assert await probe(http, f"{base}/livez") == (200, "live\n")  # the job is still served
                assert (await health(FRAMEPOOL_HTTP_PORT=str(port)))[0] == 0
                draining = await (await http.get(f"{base}/status")).json()
                assert (draining["phase"], draining["live"], draining["ready"]) == ("draining", True, False)
                await asyncio.wait_for(logged(seen, arrived, "readiness: not ready: draining"), EVENT)
                await stop(tone)
        reading.cancel()
        code, log = await exit_status(process, seen)  # the room ended with alice: so did the job and drain
        assert code == ExitStatus.OK, log
        said = messages(log)
        assert sum(m.startswith("readiness: not ready: draining") for m in said) == 1, said
        assert said.count("drain ended: every job finished") == 1, said
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def flowing(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """/status once a stream's frames reach its worker's processors, and the worker's CPU time shows it
    (read from /proc in clock ticks, at most once a second)."""
    while True:
        status: dict[str, Any] = await (await http.get(url)).json()
        processed = any(stream["frames_out"] > 0 for stream in status["streams"])
        if processed and all(worker["cpu_seconds"] > 0 for worker in status["workers"]):
            return status
        await asyncio.sleep(POLL)


async def test_liveness_503_once_livekit_retries_are_exhausted(
    devserver: DevServer, tmp_path: Path, room_name: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The job's shutdown callback lingers for shutdown_timeout: the stop ladder, and the 503, last that long.
    process = await start_daemon(
        devserver,
        tmp_path,
        "tests.support.agent_apps:lingering_server",
        http_port=str(port),
        max_retry="2",
        shutdown_timeout="20",
    )
    seen: list[str] = []
    reading = asyncio.ensure_future(read_log(process, seen, asyncio.Event()))  # a full pipe would block it
    try:
        async with aiohttp.ClientSession() as http:
            await asyncio.wait_for(until_answer(http, f"{base}/readyz", 200), PROCESS)
            async with joined(devserver, "alice", room_name) as alice:
                running = asyncio.get_running_loop().create_future()
                alice.on("data_received", lambda packet: running.done() or running.set_result(packet.data))
                assert await asyncio.wait_for(running, EVENT) == b"running"
                await devserver.aclose()  # LiveKit is gone for good
                body = await asyncio.wait_for(until_answer(http, f"{base}/livez", 503), PROCESS)
        assert body.startswith("not live: LiveKit retries exhausted: cannot reach LiveKit at ws://127.0.0.1:")
        assert "after 2 attempts: connection refused" in body and body.count("\n") == 1
        code, out, err = await health(FRAMEPOOL_HTTP_PORT=str(port))
        assert (code, out) == (1, "")
        assert err == f"framepool health: http://127.0.0.1:{port}/livez answered 503: {body[:-1]}\n"
        reading.cancel()
        code, log = await exit_status(process, seen)
        assert code == ExitStatus.UNAVAILABLE, log
        assert log.splitlines()[-1].startswith("framepool: cannot reach LiveKit at ws://127.0.0.1:")
        assert "readiness: not ready: LiveKit retries exhausted" in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_port_zero_serves_nothing(devserver: DevServer, tmp_path: Path) -> None:
    process = await start_daemon(devserver, tmp_path, http_port="0")
    seen: list[str] = []
    arrived = asyncio.Event()
    reading = asyncio.ensure_future(read_log(process, seen, arrived))
    try:
        await asyncio.wait_for(logged(seen, arrived, "registered 1 agent"), PROCESS)
        listening = [c for c in psutil.Process(process.pid).net_connections("tcp") if c.status == "LISTEN"]
        assert listening == []
        code, _, err = await health(FRAMEPOOL_HTTP_PORT="0")
        assert (code, err) == (
            1,
            "framepool health: the health endpoints are disabled (http_port = 0); pass --url\n",
        )
        reading.cancel()
        code, log = await stop_daemon(process, seen)
        assert code == ExitStatus.OK, log
        assert not any("health and status on" in m or m.startswith("readiness") for m in messages(log))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_port_in_use_is_one_line_and_exit_2(devserver: DevServer, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await start_daemon(devserver, tmp_path, http_port=str(port))
        code, log = await exit_status(process, [])
    assert code == ExitStatus.CONFIG
    assert log.splitlines() == [
        f"framepool: cannot serve health and status on 0.0.0.0:{port}: address already in use; set "
        "http_port (FRAMEPOOL_HTTP_PORT) to a free port, or 0 to disable"
    ], log
