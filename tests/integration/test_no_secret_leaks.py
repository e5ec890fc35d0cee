"""No API secret and no token in anything framepool prints, in a full run that goes wrong in every usual way
(test process, driving a real `framepool start` and the `framepool` commands).

The dev server runs with a distinctive 40-character API secret. `framepool start --config` runs against it
with JSON logs at debug level, two workers under the forkserver, a data flow to a webhook sink (the bridge
process, whose signing secret is distinctive too) and, on every audio track, a processor that raises on
every frame. A participant publishes audio and video and sends data; then a second job is offered while the
daemon is full (it declines), a worker is killed with SIGKILL (the pool restarts it), the dev server goes
away and comes back (the agent reconnects and registers again), and SIGTERM stops it all. The commands run
besides (`framepool config` without and with the sink's config, `config --check` of the good and a bad
file, `start` with the bad file, `start` against a LiveKit nobody answers for) are collected too.

Then every line of output is searched for the API secret, the webhook secret and anything shaped like a JWT
(`eyJ...`: the join tokens the dev server hands out, signed with the secret). Every line the daemon logs
(supervisor, workers, forkserver, bridge share its stderr) must be a JSON object with the fields of
`framepool.logs`, and the lines about the job carry its context.

HTTP endpoints: when Settings has `http_port` (the operations endpoints), the daemon serves them on a free
port and the bodies of /livez, /readyz, /status and /metrics are searched as well; an endpoint that does not
answer then fails the test. Before that setting exists there is nothing to fetch.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import string
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import psutil
import pytest
from livekit.protocol import agent as agent_pb
from livekit.protocol import models

from framepool.devserver.agents import dispatcher_for
from framepool.devserver.server import DevServer
from framepool.settings import Settings, env_name
from tests.support.daemon import ROOT, assert_gone
from tests.support.devserver import make_token
from tests.support.sdk import agent_of, publish_tone, publish_video, stop
from tests.support.timeouts import EVENT, PROCESS
from tests.support.webhook import WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(4 * PROCESS)]

API_KEY = "leakcheck"
API_SECRET = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
WEBHOOK_SECRET = "whsec_" + secrets.token_hex(20)
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")
HAS_HTTP = "http_port" in Settings.__struct_fields__
JSON_FIELDS = ("timestamp", "ts", "level", "process", "pid", "logger", "message")

CONFIG = """
workers = 2
start_method = "forkserver"
max_jobs = 1
spool_dir = "{spool}"

[[sinks]]
name = "hook"
type = "webhook"
[sinks.options]
url = "{url}"
secret = "{secret}"

[[agents]]
agent_name = ""
audio = ["audio-level", "tests.support.procs:Fail"]
video = ["brightness"]
[[agents.data.route]]
match = {{ topic = "telemetry" }}
to_bridges = ["hook"]
"""


def free_port() -> int:
    """A port free now, for the daemon to bind a moment later (it cannot be handed a bound socket)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def leaks(text: str) -> list[str]:
    """The lines of `text` that hold a secret or a token."""
    return [
        line for line in text.splitlines() if API_SECRET in line or WEBHOOK_SECRET in line or JWT.search(line)
    ]


def cli_environment(url: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMEPOOL_", "LIVEKIT_"))}
    environ.update(LIVEKIT_URL=url, LIVEKIT_API_KEY=API_KEY, LIVEKIT_API_SECRET=API_SECRET)
    environ.update(FRAMEPOOL_LOG_LEVEL="debug", FRAMEPOOL_LOG_FORMAT="json")
    return environ


class Daemon:
    """`framepool start --config` with its stdout and stderr read into lists as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self._arrived = asyncio.Event()
        self._readers = [
            asyncio.ensure_future(self._read(process.stderr, self.stderr)),
            asyncio.ensure_future(self._read(process.stdout, self.stdout)),
        ]

    async def _read(self, stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        while line := await stream.readline():
            into.append(line.decode(errors="replace"))
            self._arrived.set()

    async def logged(self, text: str, count: int = 1) -> None:
        """Until `count` stderr lines hold `text`."""

        async def seen() -> None:
            while sum(text in line for line in self.stderr) < count:
                self._arrived.clear()
                await self._arrived.wait()

        try:
            await asyncio.wait_for(seen(), EVENT)
        except TimeoutError:
            raise AssertionError(
                f"not logged: {text!r}; the last lines:\n" + "".join(self.stderr[-40:])
            ) from None

    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stderr]

    async def finish(self) -> int:
        status = await asyncio.wait_for(self.process.wait(), PROCESS)
        await asyncio.wait_for(asyncio.gather(*self._readers), EVENT)
        return status


@asynccontextmanager
async def daemon(config: Path, url: str, http_port: int) -> AsyncIterator[Daemon]:
    env = cli_environment(url)
    if HAS_HTTP:
        env.update({env_name("http_host"): "127.0.0.1", env_name("http_port"): str(http_port)})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framepool.cli", "start", "--config", str(config),
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield Daemon(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def http_bodies(port: int) -> dict[str, str]:
    """The operations endpoints' bodies (any status: a 503 says why, and must not say a secret either)."""
    bodies = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=EVENT)) as http:
        for path in ("/livez", "/readyz", "/status", "/metrics"):
            async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                bodies[path] = await response.text()
    assert bodies["/status"].startswith("{") and "# TYPE" in bodies["/metrics"], bodies
    return bodies


def worker_pids(supervisor: int) -> list[int]:
    """The processor workers: under the forkserver, the supervisor's grandchildren (the bridge and the
    forkserver itself are its children)."""
    return [
        process.pid
        for process in psutil.Process(supervisor).children(recursive=True)
        if process.ppid() != supervisor
    ]


async def run_a_job_that_goes_wrong(devserver: DevServer, run: Daemon, hook: WebhookReceiver) -> None:
    """Media and data in a room; a declined offer; a worker killed; a reconnect."""
    from livekit import rtc

    room = rtc.Room()
    await asyncio.wait_for(
        room.connect(devserver.url, make_token("alice", "leaks", secret=API_SECRET, api_key=API_KEY)), EVENT
    )
    try:
        agent = await asyncio.wait_for(agent_of(room), EVENT)
        _, audio = await publish_tone(room)
        _, video = await publish_video(room, 320, 240)
        await run.logged("process() raised ValueError: bad frame")
        for n in range(5):
            await room.local_participant.publish_data(
                json.dumps({"n": n}).encode(), topic="telemetry", destination_identities=[agent.identity]
            )
        await hook.wait_for_events(5, within=EVENT)
        # Offered to the daemon while it runs its one job (max_jobs = 1): it declines.
        dispatcher = dispatcher_for(devserver.app, devserver)
        [worker] = dispatcher.workers.values()
        request = agent_pb.SimulateJobRequest(type=agent_pb.JT_ROOM, room=models.Room(name="second"))
        dispatcher.launch_simulated(worker, request)
        await run.logged("declined: full")
        os.kill(worker_pids(run.process.pid)[0], signal.SIGKILL)
        await run.logged("restarting it")
        await stop(audio)
        await stop(video)
    finally:
        await room.disconnect()


async def reconnect(devserver: DevServer, run: Daemon) -> DevServer:
    """The dev server goes away and a new one takes its port: the agent loses its connection and registers
    again."""
    await devserver.aclose()
    await run.logged("lost the connection to LiveKit")
    again = DevServer(port=devserver.port, keys={API_KEY: API_SECRET}, departure_timeout=0.5)
    await again.start()
    await run.logged("registered as worker", count=2)
    return again


def run_cli(*args: str, url: str, cwd: Path) -> str:
    """A `framepool` command to its end: what it printed, stdout and stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "framepool.cli", *args],
        capture_output=True, text=True, env=cli_environment(url), cwd=cwd, timeout=PROCESS,
    )  # fmt: skip
    return f"$ framepool {' '.join(args)} (exit {done.returncode})\n{done.stdout}{done.stderr}"


def command_outputs(tmp_path: Path, url: str, closed_port: int) -> str:
    """`framepool config`, and failing commands: a bad file checked and started, LiveKit not answering."""
    bad = tmp_path / "bad.toml"
    bad.write_text('workers = "many"\n[[agents]]\naudio = ["no-such-processor"]\n')
    unreachable = f"ws://127.0.0.1:{closed_port}"
    outputs = [
        run_cli("config", url=url, cwd=tmp_path),
        run_cli("config", "--config", str(tmp_path / "framepool.toml"), url=url, cwd=tmp_path),
        run_cli("config", "--check", "--config", str(tmp_path / "framepool.toml"), url=url, cwd=ROOT),
        run_cli("config", "--check", "--config", str(bad), url=url, cwd=tmp_path),
        run_cli("start", "--config", str(bad), url=url, cwd=tmp_path),
        run_cli(
            "start",
            "--max-retry",
            "1",
            "--config",
            str(tmp_path / "framepool.toml"),
            url=unreachable,
            cwd=ROOT,
        ),
    ]
    assert "(exit 0)" in outputs[0] and "api_secret" in outputs[0]  # the setting is shown, masked
    assert all("(exit 0)" not in output for output in outputs[3:]), outputs
    return "\n".join(outputs)


def assert_log_lines_are_json_with_context(run: Daemon) -> None:
    """Every daemon line a JSON object with the log fields; the lines about a job carry job, room and agent,
    the workers' their index, the bridge's the sink."""
    records = run.records()
    for record in records:
        assert all(field in record for field in JSON_FIELDS), record
    roles = {record["process"] for record in records}
    assert {"supervisor", "worker", "bridge"} <= roles, roles
    [started] = [r for r in records if r["message"] == "job started"]
    assert (started["room"], started["agent"], started["process"]) == ("leaks", "(automatic)", "supervisor")
    failed = next(r for r in records if "process() raised ValueError" in str(r["message"]))
    assert (failed["process"], failed["job"], failed["room"]) == ("worker", started["job"], "leaks")
    assert isinstance(failed["worker"], int) and "ValueError: bad frame" in str(failed["exc"])
    assert all(isinstance(r["worker"], int) for r in records if r["process"] == "worker" and "job" in r)
    [declined] = [r for r in records if "declined: full" in str(r["message"])]
    assert (declined["room"], declined["agent"]) == ("second", "(automatic)"), declined
    [restarted] = [r for r in records if str(r["message"]).endswith("restarting it")]
    assert isinstance(restarted["worker"], int), restarted
    assert any(r["process"] == "bridge" and r.get("sink") == "hook" for r in records), roles


async def test_nothing_framepool_prints_holds_a_secret_or_a_token(tmp_path: Path, closed_port: int) -> None:
    hook = WebhookReceiver(secret=WEBHOOK_SECRET)
    await hook.start()
    devserver = DevServer(port=0, keys={API_KEY: API_SECRET}, departure_timeout=0.5)
    await devserver.start()
    config = tmp_path / "framepool.toml"
    config.write_text(CONFIG.format(spool=tmp_path / "spool", url=hook.url, secret=WEBHOOK_SECRET))
    http_port = free_port()
    bodies: dict[str, str] = {}
    try:
        async with daemon(config, devserver.url, http_port) as run:
            await run.logged("registered as worker")
            await run_a_job_that_goes_wrong(devserver, run, hook)
            if HAS_HTTP:
                bodies = await http_bodies(http_port)
            devserver = await reconnect(devserver, run)
            pids = [child.pid for child in psutil.Process(run.process.pid).children(recursive=True)]
            run.process.send_signal(signal.SIGTERM)
            status = await run.finish()
            await assert_gone(pids)
    finally:
        await devserver.aclose()
        await hook.stop()
    logged = "".join(run.stderr)
    assert status == 0, logged[-5000:]
    assert run.stdout == [], run.stdout
    assert_log_lines_are_json_with_context(run)
    everything = {"daemon log": logged, "commands": command_outputs(tmp_path, devserver.url, closed_port)}
    everything.update(bodies)
    found = {where: leaks(text) for where, text in everything.items() if leaks(text)}
    assert not found, found
