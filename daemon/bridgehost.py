"""The supervisor's handle on the bridge process: start it, restart it with backoff when it dies, stop it in
order (supervisor).

The bridge (`python -m framepool.bridge`, `framepool.bridge.process`) delivers the sinks' spools; the
supervisor only appends to them (`framepool.ipc.spool.SpoolWriter`), so sink I/O, TLS, retries and fsync
never run on the loop that holds the rooms. A bridge that dies costs a restart, not data: whatever it had not
checkpointed is delivered again by the next one. Restarts back off exponentially (reset after a run of
`STABLE_RUN` seconds); an exit with `BridgeExit.CONFIG` halts the host, since a restart would fail the same
way. The child arms PR_SET_PDEATHSIG itself, so it dies with the supervisor; the host forks it from the
loop's thread, which lives as long as the supervisor (the signal is tied to the forking thread).

Stop: SIGTERM, then the bridge delivers what its spools hold for up to `stop_timeout`, then SIGKILL after
`KILL_MARGIN` more: the host's stop takes at most stop_timeout + KILL_MARGIN seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

import msgspec

from framepool.bridge.process import BridgeExit, BridgeStart
from framepool.bridge.runner import DeliveryOptions
from framepool.ipc.spool import SpoolWriter, sink_spool
from framepool.settings import Settings

STABLE_RUN = 30.0  # seconds a bridge must run for the restart backoff to start again from its minimum
KILL_MARGIN = 5.0  # seconds after stop_timeout before SIGKILL
log = logging.getLogger("framepool.bridgehost")


def bridge_start(settings: Settings) -> BridgeStart:
    """The bridge's start document from the settings (the supervisor's one source of truth)."""
    delivery = DeliveryOptions(
        batch_max=settings.bridge_batch_max,
        batch_ms=settings.bridge_batch_ms,
        retry_initial=settings.bridge_retry_initial,
        retry_max=settings.bridge_retry_max,
    )
    return BridgeStart(
        spool_dir=str(Path(settings.spool_dir).absolute()),
        sinks=list(settings.sinks),
        delivery=delivery,
        stop_timeout=settings.bridge_stop_timeout,
        parent_pid=os.getpid(),
        log_level=settings.log_level,
        log_format=settings.log_format,
    )


def open_spools(settings: Settings) -> dict[str, SpoolWriter]:
    """One writer per configured sink, by sink name: the intake appends to them (`SpoolWriter.append` from
    the loop: one write(), never a wait; False when full, counted). Close them after the bridge stopped."""
    spool_dir = Path(settings.spool_dir).absolute()
    return {
        spec.name: SpoolWriter(
            sink_spool(spool_dir, spec.name),
            max_bytes=settings.spool_max_mb << 20,
            commit_interval=settings.spool_commit_ms / 1000,
        )
        for spec in settings.sinks
    }


class BridgeHost:
    """One bridge process and its restarts. `ready` is set each time a bridge announced itself."""

    def __init__(
        self, start: BridgeStart, *, restart_backoff: float = 1.0, restart_backoff_max: float = 30.0
    ) -> None:
        self.start_document = msgspec.json.encode(start)
        self.stop_timeout = start.stop_timeout
        self._backoff = (restart_backoff, restart_backoff_max)
        self.process: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.restarts = 0
        self.halted = False
        self.exit_codes: list[int] = []
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.returncode is None else None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name="bridge host")
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("bridge host failed", exc_info=task.exception())

    async def _supervise(self) -> None:
        delay = self._backoff[0]
        while not self._stopping.is_set():
            started = time.monotonic()
            code = await self._run_once()
            self.exit_codes.append(code)
            if self._stopping.is_set():
                return
            if code == BridgeExit.CONFIG:
                self.halted = True
                log.error("bridge exited with a configuration error: not restarted (fix the sinks' config)")
                return
            delay = self._backoff[0] if time.monotonic() - started > STABLE_RUN else delay
            self.restarts += 1
            log.warning("bridge exited with %d: restart %d in %.1f s", code, self.restarts, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(self._backoff[1], delay * 2)

    async def _run_once(self) -> int:
        self.ready.clear()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "framepool.bridge",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self.process = process
        if self._stopping.is_set():  # stop() came while this one was starting: it must not outlive it
            self._terminate()
        assert process.stdin is not None and process.stdout is not None
        with contextlib.suppress(ConnectionError):
            process.stdin.write(self.start_document)
            await process.stdin.drain()
        process.stdin.close()
        if (await process.stdout.readline()).strip() == b"ready":
            self.ready.set()
            log.info("bridge started (pid %d)", process.pid)
        return await process.wait()

    async def finished(self) -> int | None:
        """Wait for the host to give up (halted on a config error, or stopped); the last exit code."""
        if self._task is not None:
            await asyncio.shield(self._task)
        return self.exit_codes[-1] if self.exit_codes else None

    async def stop(self) -> int | None:
        """SIGTERM the bridge, wait for it to deliver and exit (SIGKILL past the deadline); its exit code.
        A restart under way when this is called is stopped the same way: `_run_once` signals a bridge that
        starts after the stop was asked for."""
        self._stopping.set()
        self._terminate()
        if self._task is not None:
            budget = self.stop_timeout + KILL_MARGIN
            try:
                await asyncio.wait_for(asyncio.shield(self._task), budget)
            except TimeoutError:
                log.error("bridge did not stop within %.1f s: killed", budget)
                process = self.process
                if process is not None and process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGKILL)
                await self._task
        process = self.process
        return None if process is None else process.returncode

    def _terminate(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
