"""The container image built from the repository's Dockerfile and run with podman against the loopback dev
server: it becomes ready, passes its own HEALTHCHECK, runs a dispatched job with the built-in processors,
and `podman stop` drains it to exit 0.

Slow the first time (a Debian root filesystem, then pip installing every dependency: a few minutes); later
runs reuse podman's layer cache. `make image-test` runs only this. tests/support/image.py says why each
podman flag is there.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from livekit import api

from framepool.devserver.server import DevServer
from tests.support.daemon import ROOT, logged, read_log
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.image import IMAGE, LIMITS, PODMAN, build_image, ensure_base_image, inspect, podman
from tests.support.sdk import joined, publish_tone, publish_video, stop
from tests.support.timeouts import EVENT, PER_TEST, PROCESS, PROMPT, SCALE

BUILD = 900.0 * SCALE  # a first build: the base root filesystem, then every wheel from the index
pytestmark = [pytest.mark.image, pytest.mark.timeout(BUILD + PER_TEST)]

HTTP = "http://127.0.0.1:8081"  # the image's defaults: the HEALTHCHECK asks this port
AGENT = "image-test"
# Built-in processors whose dependencies only the image brings (onnxruntime and silero-vad's model for vad,
# OpenCV's Haar cascades for privacy-blur): `framepool start` constructs each in a worker before it registers.
# privacy-blur publishes the blurred video, which needs publish_video.
CONFIG = f"""workers = 1
[[agents]]
agent_name = "{AGENT}"
audio = ["audio-level(window_ms=100)", "vad"]
video = ["video-motion(threshold=4)", "privacy-blur"]
publish_video = true
topic = "analysis"
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("image")
    ensure_base_image(workdir / "mmdebstrap.log", BUILD)
    build_image(workdir, BUILD)
    yield IMAGE


@pytest.fixture
async def devserver() -> AsyncIterator[DevServer]:
    server = DevServer(port=0, keys={API_KEY: API_SECRET}, departure_timeout=0.5)
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


# deploy/k8s/deployment.yaml's securityContext and emptyDirs: a read-only root with /tmp and the spool
# writable, no capabilities, no privilege escalation.
KUBERNETES_SECURITY = (
    "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp", "--tmpfs", "/var/lib/framepool/spool",
    "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
)  # fmt: skip


def stop_timeout() -> str:
    """The --stop-timeout the Dockerfile tells users to run with (the stop budget's outer killer)."""
    match = re.search(r"--stop-timeout (\d+)", (ROOT / "Dockerfile").read_text())
    assert match
    return match.group(1)


async def run_container(name: str, config: Path, devserver: DevServer) -> asyncio.subprocess.Process:
    """`podman run` in the foreground, confined as the Kubernetes example confines it: the daemon's log
    arrives on its stderr. The API secret goes in through podman's environment (`-e NAME` without a
    value), not its command line."""
    env = {
        **os.environ,
        "LIVEKIT_URL": devserver.url,
        "LIVEKIT_API_KEY": API_KEY,
        "LIVEKIT_API_SECRET": API_SECRET,
    }
    return await asyncio.create_subprocess_exec(
        *PODMAN, "run", "--name", name, "--init", "--network", "host", *LIMITS, *KUBERNETES_SECURITY,
        "--stop-timeout", stop_timeout(),
        "-e", "LIVEKIT_URL", "-e", "LIVEKIT_API_KEY", "-e", "LIVEKIT_API_SECRET",
        "--volume", f"{config}:/etc/framepool/framepool.toml:ro", IMAGE,
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def status_of(session: aiohttp.ClientSession, path: str) -> int:
    async with session.get(HTTP + path) as response:
        return response.status


async def until_ready(session: aiohttp.ClientSession) -> None:
    """/readyz polled as an orchestrator's probe would, from the registration's log line until it is 200
    (readiness also waits for a worker, which the daemon starts before it registers)."""
    deadline = asyncio.get_running_loop().time() + PROMPT
    while (status := await status_of(session, "/readyz")) != 200:
        assert asyncio.get_running_loop().time() < deadline, f"/readyz still {status} after registering"
        await asyncio.sleep(0.1)


async def results(room_data: asyncio.Queue[dict[str, object]], processors: set[str]) -> None:
    """Until the agent has published a result of each of `processors` for alice's tracks."""
    while processors:
        message = await room_data.get()
        if message.get("participant") == "alice":
            processors.discard(str(message.get("processor")))


def assert_port_free() -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", 8081))
        except OSError as exc:
            raise AssertionError(
                f"port 8081 is taken ({exc.strerror}): the test runs the image's defaults"
            ) from None


async def job_then_drain(
    name: str,
    session: aiohttp.ClientSession,
    lk: api.LiveKitAPI,
    devserver: DevServer,
    seen: list[str],
    arrived: asyncio.Event,
) -> asyncio.subprocess.Process:
    """A dispatched job with alice publishing audio and video until results of each kind arrive; then
    `podman stop` (SIGTERM): the daemon drains, unready but live, while alice is still in the room, and the
    job ends when she leaves. The `podman stop` process, still waiting for the exit."""
    room = f"room-{uuid.uuid4().hex[:8]}"
    await lk.room.create_room(api.CreateRoomRequest(name=room))
    await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(agent_name=AGENT, room=room))
    async with joined(devserver, "alice", room) as alice:
        room_data: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        alice.on(
            "data_received",
            lambda packet: packet.topic == "analysis" and room_data.put_nowait(json.loads(packet.data)),
        )
        feeds = [(await publish_tone(alice))[1], (await publish_video(alice, 320, 240))[1]]
        try:
            await asyncio.wait_for(results(room_data, {"audio-level", "video-motion"}), EVENT)
            stopping = await asyncio.create_subprocess_exec(
                *PODMAN, "stop", name, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            await asyncio.wait_for(logged(seen, arrived, "shutdown requested: draining"), EVENT)
            assert (await status_of(session, "/readyz"), await status_of(session, "/livez")) == (503, 200)
        finally:
            for feed in feeds:
                await stop(feed)
    return stopping


async def test_the_image_serves_a_job_and_drains_on_podman_stop(
    image: str, devserver: DevServer, tmp_path: Path
) -> None:
    assert inspect(image, PROCESS)["Healthcheck"]["Test"] == ["CMD", "framepool", "health"]
    assert_port_free()
    config = tmp_path / "framepool.toml"
    config.write_text(CONFIG)
    name = f"framepool-image-test-{uuid.uuid4().hex[:8]}"
    container = await run_container(name, config, devserver)
    seen: list[str] = []
    arrived = asyncio.Event()
    reader = asyncio.create_task(read_log(container, seen, arrived))
    try:
        async with (
            aiohttp.ClientSession() as session,
            api.LiveKitAPI(devserver.http_url, API_KEY, API_SECRET) as lk,
        ):
            await asyncio.wait_for(logged(seen, arrived, "registered 1 agent"), PROCESS)
            await until_ready(session)
            health = podman("healthcheck", "run", name, timeout=EVENT, check=False)
            assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout}{health.stderr}"
            stopping = await job_then_drain(name, session, lk, devserver, seen, arrived)
        assert await asyncio.wait_for(stopping.wait(), PROCESS) == 0
        await asyncio.wait_for(container.wait(), PROCESS)
        await reader
        log = "".join(seen)
        assert inspect(name, PROCESS)["State"]["ExitCode"] == 0, log[-4000:]
        for line in ("job ended", "stop ladder: drain", "stop ladder: stop workers", "agent server stopped"):
            assert line in log, f"no {line!r} in the container's log:\n{log[-4000:]}"
        assert "cut short" not in log and "Traceback" not in log
    finally:
        podman("rm", "--force", name, timeout=PROCESS, check=False)
        if container.returncode is None:
            await container.wait()
