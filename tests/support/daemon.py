"""A real `framepool` daemon process as the tests see it: its workers, its exit (test process)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import psutil

from tests.support.timeouts import EVENT, PROCESS

ROOT = Path(__file__).resolve().parents[2]  # the repository: the daemon's cwd, so `tests.support.*` imports


def is_bridge(process: psutil.Process) -> bool:
    """The bridge process, read at any point of its life: `python -m framepool.bridge` until it sets its
    title, `framepool: bridge` after (`framepool.proctitle`)."""
    try:
        command = " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False
    return "framepool.bridge" in command or command.startswith("framepool: bridge")


def worker_pids(process: asyncio.subprocess.Process) -> list[int]:
    """The daemon's child processes (its processor workers), read once it has registered."""
    pids = [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
    assert pids, "the daemon has no worker processes"
    return pids


async def assert_gone(pids: list[int]) -> None:
    """The workers have exited. A worker may still be in the kernel's exit path when the daemon's own exit is
    seen (the pool counts a closed control channel as a stopped worker, without reaping it), so allow it a
    bounded moment to finish dying; a worker still running its code after that is the failure."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = await asyncio.to_thread(psutil.wait_procs, procs, timeout=EVENT)
    assert not alive, f"worker processes outlived the daemon: {[(p.pid, p.status()) for p in alive]}"


async def exit_status(process: asyncio.subprocess.Process, seen: list[str]) -> tuple[int, str]:
    """Wait for the daemon to exit; its status and everything it logged."""
    assert process.stderr is not None
    rest = await asyncio.wait_for(process.stderr.read(), PROCESS)
    status = await asyncio.wait_for(process.wait(), PROCESS)
    return status, "".join(seen) + rest.decode(errors="replace")


async def start_with_config(url: str, key: str, secret: str, config: Path) -> asyncio.subprocess.Process:
    """`framepool start --config config` against the LiveKit at `url` (one worker), its log on stderr."""
    env = {**os.environ, "LIVEKIT_URL": url, "LIVEKIT_API_KEY": key, "LIVEKIT_API_SECRET": secret}
    env["FRAMEPOOL_WORKERS"] = "1"
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framepool.cli", "start", "--config", str(config),
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def read_log(process: asyncio.subprocess.Process, seen: list[str], arrived: asyncio.Event) -> None:
    """Append the daemon's log lines to `seen` until it closes stderr, setting `arrived` at each."""
    assert process.stderr is not None
    while line := await process.stderr.readline():
        seen.append(line.decode(errors="replace"))
        arrived.set()


async def logged(seen: list[str], arrived: asyncio.Event, text: str, count: int = 1) -> None:
    """Until `count` lines of `seen` hold `text` (`read_log` fills it)."""
    while sum(text in line for line in seen) < count:
        arrived.clear()
        await arrived.wait()


def start_refused(config: Path) -> subprocess.CompletedProcess[str]:
    """`framepool start --config config` pointed at a LiveKit where nothing listens, run to its end: for
    configurations that must be refused before any connection is tried."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMEPOOL_", "LIVEKIT_"))}
    environ.update(LIVEKIT_URL="ws://127.0.0.1:1", LIVEKIT_API_KEY="key", LIVEKIT_API_SECRET="secret")
    return subprocess.run(
        [sys.executable, "-m", "framepool.cli", "start", "--config", str(config)],
        capture_output=True, text=True, env=environ, timeout=PROCESS,
    )  # fmt: skip
