"""systemd's watchdog and status from a real `framepool start` (supervisor) against the dev server, with
systemd's end of the protocol played by a datagram socket (NOTIFY_SOCKET) and WATCHDOG_USEC set as systemd
sets it: pings at half the interval, none while an agent's coroutine blocks the supervisor's loop (a real
time.sleep in the loop, the bug the watchdog is for) and again once it runs; STATUS= with jobs and workers;
STOPPING=1 then EXTEND_TIMEOUT_USEC= at every beat while a job holds the drain open."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import statistics
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from livekit import rtc

from framepool.devserver.server import DevServer
from tests.support.daemon import ROOT, exit_status, logged, read_log
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.notify_socket import Message, NotifySocket
from tests.support.sdk import agent_of, joined, next_event
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration

WATCHDOG_USEC = 2_000_000  # systemd's WatchdogSec=2: a ping is due every second
BEAT = WATCHDOG_USEC / 2e6
BLOCK = 4.0  # seconds the agent blocks the loop: four missed pings, twice what systemd would tolerate


def is_ping(message: Message) -> bool:
    return message.get("WATCHDOG") == "1"


@dataclass
class Daemon:
    process: asyncio.subprocess.Process
    notify: NotifySocket
    log: list[str]
    arrived: asyncio.Event
    reading: asyncio.Future[None] | None = None

    async def exit(self) -> tuple[int, str]:
        """Its exit status and everything it logged, once it exits."""
        assert self.reading is not None
        self.reading.cancel()
        return await exit_status(self.process, self.log)


@asynccontextmanager
async def daemon(devserver: DevServer, tmp_path: Path) -> AsyncIterator[Daemon]:
    """`framepool start` with tests.support.systemd_apps as systemd would run it, until READY=1."""
    notify = NotifySocket(tmp_path / "notify")
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "FRAMEPOOL_WORKERS": "1",
        "LIVEKIT_URL": devserver.url,
        "LIVEKIT_API_KEY": API_KEY,
        "LIVEKIT_API_SECRET": API_SECRET,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framepool.cli", "start", "tests.support.systemd_apps:server",
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    running = Daemon(process, notify, [], asyncio.Event())
    running.reading = reading = asyncio.ensure_future(read_log(process, running.log, running.arrived))
    try:
        await notify.wait_for(lambda message: "READY" in message)
        yield running
    finally:
        reading.cancel()
        if process.returncode is None:
            process.kill()
            await process.wait()
        notify.close()


async def running_job(tester: rtc.Room) -> rtc.RemoteParticipant:
    """The agent of `tester`'s room once its job runs (it says so on the status topic)."""
    running = next_event(tester, "data_received", lambda packet: packet.data == b"running")
    agent = await asyncio.wait_for(agent_of(tester), EVENT)
    await asyncio.wait_for(running, EVENT)
    return agent


async def tell(tester: rtc.Room, agent: rtc.RemoteParticipant, command: str) -> None:
    await tester.local_participant.publish_data(command.encode(), destination_identities=[agent.identity])


async def test_watchdog_pings_stop_while_the_loop_is_blocked_and_resume(
    devserver: DevServer, room_name: str, tmp_path: Path
) -> None:
    async with daemon(devserver, tmp_path) as run:
        steady = await run.notify.wait_for(is_ping, after=len(run.notify.messages))
        for _ in range(3):
            await run.notify.wait_for(is_ping, after=len(run.notify.messages))
        pings = run.notify.times("WATCHDOG", after=steady)
        assert 0.7 * BEAT <= statistics.median(b - a for a, b in itertools.pairwise(pings)) <= 1.5 * BEAT, (
            pings
        )
        async with joined(devserver, "tester", room_name) as tester:
            agent = await running_job(tester)
            await run.notify.wait_for(
                lambda m: m.get("STATUS", "").startswith("ready: 1/1 agents registered, 1 job,")
            )
            blocked_from = len(run.notify.messages)
            await tell(tester, agent, f"block {BLOCK}")
            await asyncio.wait_for(
                logged(run.log, run.arrived, "pings withheld: the event loop stalled"), EVENT
            )
            await asyncio.wait_for(logged(run.log, run.arrived, "pings resumed"), EVENT)
            resumed = await run.notify.wait_for(is_ping, after=len(run.notify.messages))
            await run.notify.wait_for(is_ping, after=resumed + 1)
            # The gap holds the block itself and the pings withheld while the lag monitor still shows it.
            pings = run.notify.times("WATCHDOG", after=blocked_from - 1)
            gaps = [b - a for a, b in itertools.pairwise(pings)]
            assert max(gaps) >= BLOCK, gaps
            assert gaps[-1] <= 1.5 * BEAT, gaps  # back to the steady period
            await tell(tester, agent, "finish")
        run.process.send_signal(signal.SIGTERM)
        status, log = await run.exit()
        assert status == 0, log


async def test_stopping_then_stop_timeout_extensions_while_a_job_holds_the_drain(
    devserver: DevServer, room_name: str, tmp_path: Path
) -> None:
    async with daemon(devserver, tmp_path) as run, joined(devserver, "tester", room_name) as tester:
        agent = await running_job(tester)
        run.process.send_signal(signal.SIGTERM)
        stopping = await run.notify.wait_for(lambda m: "STOPPING" in m)
        message = run.notify.messages[stopping][1]
        assert message["STOPPING"] == "1"
        assert message["STATUS"] == "draining: 1/1 agents registered, 1 job, 1/1 workers ready"
        # At every beat while the job holds the drain open: a ping (still healthy) and an extension of at
        # most three beats and one more, the daemon's promise to report again before that runs out.
        beats = stopping
        for _ in range(2):
            beats = await run.notify.wait_for(lambda m: "EXTEND_TIMEOUT_USEC" in m, after=beats + 1)
            extension = run.notify.messages[beats][1]
            assert int(extension["EXTEND_TIMEOUT_USEC"]) == 4 * WATCHDOG_USEC // 2
            assert is_ping(extension)
        await tell(tester, agent, "finish")
        status, log = await run.exit()
        assert status == 0, log
        assert "cut short" not in log
        stopped = [fields.get("STATUS", "") for _, fields in run.notify.messages[stopping:]]
        assert "stopping (stop workers): 0/1 agents registered, 0 jobs, 1/1 workers ready" in stopped, stopped
