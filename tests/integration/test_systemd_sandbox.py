"""The daemon inside the sandbox systemd/framepool.service asks for, reproduced without systemd
(tests/support/systemd_sandbox.py: SystemCallFilter=@system-service ~@privileged killing with SIGSYS,
native architecture only, MemoryDenyWriteExecute as systemd's seccomp rules and the kernel's PR_SET_MDWE,
RestrictAddressFamilies, RestrictNamespaces, NoNewPrivileges, no capabilities, an unprivileged user).

First that the sandbox bites (a forbidden call kills, W+X memory and a packet socket are refused), then that
a real `framepool start` inside it still pins its worker, runs processors on onnxruntime (vad), OpenCV
(sharpness) and numpy, takes media through the livekit FFI library and delivers results to a participant
of the dev server, which runs outside the sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from livekit import rtc

from framepool.devserver.server import DevServer
from tests.support.daemon import ROOT, assert_gone, exit_status, logged, read_log
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.sdk import SAMPLE_RATE, agent_of, joined, stop, tone, video_pattern
from tests.support.timeouts import EVENT, PROCESS

pytestmark = pytest.mark.integration

SANDBOX = [sys.executable, str(ROOT / "tests" / "support" / "systemd_sandbox.py"), "--unprivileged", "--"]
CONFIG = """
cpus = [{cpu}]
[[agents]]
audio = ["vad(emit_probabilities=true)", "audio-level"]
video = ["sharpness"]
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any user can read, as the unit's DynamicUser= needs its config to be."""
    with tempfile.TemporaryDirectory(prefix="framepool-sandbox-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def sandboxed(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SANDBOX, sys.executable, "-c", code], capture_output=True, text=True, timeout=PROCESS, cwd=ROOT
    )


def test_the_sandbox_kills_forbidden_calls_and_refuses_wx_memory_and_other_families() -> None:
    refused = sandboxed(
        "import mmap, socket\n"
        "for make in (lambda: mmap.mmap(-1, 4096, prot=7), lambda: socket.socket(socket.AF_PACKET)):\n"
        "    try:\n        make()\n    except OSError as exc:\n        print(exc.errno)\n"
        "print(open('/proc/self/status').read())\n"
    )
    assert refused.returncode == 0, refused.stderr
    eperm, eafnosupport, *status = refused.stdout.splitlines()
    assert (int(eperm), int(eafnosupport)) == (1, 97)
    assert {"NoNewPrivs:\t1", "Seccomp:\t2", "Seccomp_filters:\t2", "CapBnd:\t0000000000000000"} <= set(
        status
    )
    killed = sandboxed("import os; os.setgroups([])")  # @privileged
    assert killed.returncode == -signal.SIGSYS, killed


async def test_the_daemon_pins_workers_and_delivers_results_inside_the_unit_sandbox(
    devserver: DevServer, room_name: str, shared_dir: Path
) -> None:
    cpu = max(psutil.Process().cpu_affinity() or [0])
    config = shared_dir / "framepool.toml"
    config.write_text(CONFIG.format(cpu=cpu))
    config.chmod(0o644)
    env = {**os.environ, "LIVEKIT_URL": devserver.url, "LIVEKIT_API_KEY": API_KEY}
    env.update(LIVEKIT_API_SECRET=API_SECRET, FRAMEPOOL_WORKERS="1", PYTHONDONTWRITEBYTECODE="1")
    process = await asyncio.create_subprocess_exec(
        *SANDBOX, sys.executable, "-m", "framepool.cli", "start", "--config", str(config),
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    seen: list[str] = []
    try:
        arrived = asyncio.Event()
        reading = asyncio.ensure_future(read_log(process, seen, arrived))
        await asyncio.wait_for(logged(seen, arrived, "registered 1 agent"), PROCESS)
        daemon = psutil.Process(process.pid)
        workers = [
            p for p in daemon.children(recursive=True) if p.cmdline()[0].startswith("framepool: worker")
        ]
        assert [os.sched_getaffinity(worker.pid) for worker in workers] == [{cpu}]
        for confined in (daemon, *workers):
            proc = Path(f"/proc/{confined.pid}")
            # Not root: uid 1000 of its own user namespace, no capability left (systemd_sandbox.py).
            assert os.readlink(proc / "ns" / "user") != os.readlink("/proc/self/ns/user")
            assert (proc / "uid_map").read_text().split()[:1] == ["1000"]
            status = (proc / "status").read_text()
            assert "Seccomp:\t2" in status and "NoNewPrivs:\t1" in status
            assert "CapEff:\t0000000000000000" in status and "CapBnd:\t0000000000000000" in status
        topics = await results_from_published_media(devserver, room_name)
        assert {"vad", "audio-level", "sharpness"} <= topics, topics
        process.send_signal(signal.SIGTERM)
        reading.cancel()
        code, log = await exit_status(process, seen)
        assert code == 0, log
        assert "Bad system call" not in log and "SIGSYS" not in log
        await assert_gone([worker.pid for worker in workers])
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def results_from_published_media(devserver: DevServer, room_name: str) -> set[str]:
    """Publish a tone and a test pattern; the processors (topics) whose results came back from the agent."""
    async with joined(devserver, "alice", room_name) as alice:
        agent = await asyncio.wait_for(agent_of(alice), EVENT)
        topics: set[str] = set()
        all_seen = asyncio.Event()

        def on_data(packet: rtc.DataPacket) -> None:
            if packet.participant is not None and packet.participant.identity == agent.identity:
                json.loads(packet.data)  # a result, not noise
                topics.add(packet.topic)
                if {"vad", "audio-level", "sharpness"} <= topics:
                    all_seen.set()

        alice.on("data_received", on_data)
        audio = rtc.AudioSource(SAMPLE_RATE, 1)
        video = rtc.VideoSource(320, 240)
        me = alice.local_participant
        await me.publish_track(rtc.LocalAudioTrack.create_audio_track("mic", audio))
        await me.publish_track(rtc.LocalVideoTrack.create_video_track("cam", video))
        feeding = [asyncio.create_task(tone(audio)), asyncio.create_task(video_pattern(video, 320, 240))]
        try:
            await asyncio.wait_for(all_seen.wait(), EVENT)
        except TimeoutError:
            pass  # the caller's assertion names the topics that did arrive
        finally:
            for task in feeding:
                await stop(task)
        return topics
