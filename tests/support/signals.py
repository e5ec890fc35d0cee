"""Signal storms for the CLI tests: what a user hammering Ctrl-C, or a service manager repeating SIGTERM,
does (test process)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence

from tests.support.timeouts import PROCESS


async def signal_until_exit(
    process: asyncio.subprocess.Process,
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    interval: float = 0.002,
) -> tuple[int, int]:
    """Send `signals` in turn every `interval` until `process` exits; returns (exit status, signals sent).

    Signals keep arriving until the very end, so some land after the process's orderly stop is over.
    Sent with os.kill, not Process.send_signal: that one polls (reaps) the child itself and races
    asyncio's child watcher, which then reports a made-up status 255.
    """
    sent = 0

    async def hammer() -> None:
        nonlocal sent
        while process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signals[sent % len(signals)])
                sent += 1
            await asyncio.sleep(interval)

    hammering = asyncio.create_task(hammer())
    try:
        status = await asyncio.wait_for(process.wait(), PROCESS)
    finally:
        hammering.cancel()
    return status, sent
