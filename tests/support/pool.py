"""Helpers for the worker-pool process tests: settings, a recording sink, exit watching, /dev/shm checks."""

from __future__ import annotations

import asyncio
import os
import select
import time
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from framepool.ipc.slots import PIXEL_FORMATS, AudioShape, OutputFrame, VideoShape
from framepool.pool import Blob, Result, StreamSpec, WorkerPool
from framepool.processors.registry import parse_spec
from framepool.settings import Settings
from tests.support.timeouts import EVENT

AUDIO_10MS = AudioShape(48000, 1, 480)  # the shape of audio_frame()
AUDIO_FRAME_BYTES = AUDIO_10MS.nbytes


def settings(**overrides: Any) -> Settings:
    """Fast pings and backoffs so failure paths complete in about a second."""
    values: dict[str, Any] = {
        "workers": 1,
        "start_method": "forkserver",
        "ping_interval": 0.2,
        "ping_timeout": 2.0,
        "restart_backoff": 0.05,
        "worker_shutdown_timeout": 3.0,
        "prewarm_timeout": 20.0,
        "log_level": "warning",
    }
    values.update(overrides)
    return msgspec.convert(values, Settings)


def audio_spec(stream_id: str, processors: str, realtime: bool = False, **kw: Any) -> StreamSpec:
    return StreamSpec(
        stream_id=stream_id,
        kind="audio",
        processors=[parse_spec(p) for p in processors.split(";")],
        realtime=realtime,
        max_frame_bytes=AUDIO_FRAME_BYTES,
        **kw,
    )


def i420(width: int, height: int) -> VideoShape:
    return VideoShape(PIXEL_FORMATS["I420"], width, height)


def audio_frame(seq: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    """Deterministic 10 ms mono frame whose first sample identifies it."""
    return np.full(480, seq % 30000, dtype=np.int16)


class RecordingSink:
    """Keeps everything the pool delivers; tests await conditions on it instead of sleeping."""

    def __init__(self) -> None:
        self.results: list[Result] = []
        self.events: list[tuple[str, str]] = []
        self.frames: list[tuple[OutputFrame, bytes]] = []  # the frame (its data dead) and a copy of it
        self.blobs: list[Blob] = []
        self._changed = asyncio.Event()

    def on_result(self, result: Result) -> None:
        self.results.append(result)
        self._changed.set()

    def on_output_frame(self, stream_id: str, frame: OutputFrame) -> None:
        self.frames.append((frame, bytes(frame.data)))
        self._changed.set()

    def on_blob(self, blob: Blob) -> None:
        self.blobs.append(blob)
        self._changed.set()

    def on_stream_event(self, stream_id: str, event: str, detail: str) -> None:
        self.events.append((event, detail))
        self._changed.set()

    def payloads(self, topic: str) -> list[Any]:
        return [msgspec.json.decode(r.data) for r in self.results if r.topic == topic]

    def event_names(self) -> list[str]:
        return [name for name, _ in self.events]

    async def wait_for(self, condition: Callable[[], bool], what: str, within: float = EVENT) -> None:
        try:
            async with asyncio.timeout(within):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {within} s waiting for {what}") from None


def wait_exited(pids: list[int], timeout: float) -> list[int]:
    """Block until every pid has exited (pidfd readiness, no polling loop); returns the ones still alive."""
    poller = select.poll()
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        fds[fd] = pid
        poller.register(fd, select.POLLIN)
    end = time.monotonic() + timeout
    alive = dict(fds)
    try:
        while alive:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            for fd, _ in poller.poll(remaining * 1000):
                poller.unregister(fd)
                alive.pop(fd, None)
        return sorted(alive.values())
    finally:
        for fd in fds:
            os.close(fd)


async def stopped_pool(pool: WorkerPool) -> list[int | None]:
    """Close the pool and return the exit codes of its workers."""
    await pool.aclose()
    return [worker.exitcode for worker in pool.stats().workers]
