"""Helpers for benchmarks/devserver.py (runs in the benchmark process): the dev server as a child process,
CPU accounting per process, join tokens, synthetic media and statistics.

The dev server runs in its own process (`python -m framepool.devserver`) so that its CPU is measured apart
from the benchmark's SDK participants, which share one livekit FFI runtime in this process.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import numpy as np
import psutil
from livekit import api, rtc

API_KEY = "devkey"
API_SECRET = "benchmark-secret-at-least-32-bytes-long"
SAMPLE_RATE = 48000
START_TIMEOUT = 30.0
TIMEOUT = 20.0  # any single SDK operation (connect, publish, first track)
STOP_TIMEOUT = 10.0


class BenchmarkError(RuntimeError):
    """A benchmark phase could not run (the message is one line for the user)."""


def token(identity: str, room: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return (
        api.AccessToken(API_KEY, API_SECRET)
        .with_identity(identity)
        .with_name(identity)
        .with_ttl(datetime.timedelta(hours=1))
        .with_grants(grants)
        .to_jwt()
    )


def room_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def connect(server: DevServerProcess, identity: str, room: str, subscribe: bool = True) -> rtc.Room:
    """An SDK participant with default RoomOptions, except that `subscribe=False` turns auto-subscribe off."""
    sdk_room = rtc.Room()
    options = rtc.RoomOptions(auto_subscribe=subscribe)
    await asyncio.wait_for(sdk_room.connect(server.url, token(identity, room), options), TIMEOUT)
    return sdk_room


async def publish_audio(sdk_room: rtc.Room, source: rtc.AudioSource, name: str) -> None:
    track = rtc.LocalAudioTrack.create_audio_track(name, source)
    await asyncio.wait_for(sdk_room.local_participant.publish_track(track), TIMEOUT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevServerProcess:
    """`python -m framepool.devserver` on a free loopback port; stopped with SIGTERM (SIGKILL as the outer
    rung)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # stderr goes to a file, not a pipe: nobody drains it while the benchmark runs, but a failed
        # start must be able to say why (the dev server prints start-up errors there).
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server process
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "framepool.devserver",
            "--port",
            str(self.port),
            "--keys",
            f"{API_KEY}:{API_SECRET}",
            "--departure-timeout",
            "0.5",
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
        )
        self.ps = psutil.Process(self.proc.pid)
        assert self.proc.stdout is not None
        seen: list[str] = []
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while line := (await self.proc.stdout.readline()).decode(errors="replace"):
                    seen.append(line.strip())
                    if line.strip().startswith("url:"):
                        return
        except TimeoutError:
            pass
        await self.stop()
        self._stderr.seek(0)
        errors = self._stderr.read().decode(errors="replace").strip().splitlines()[-3:]
        raise BenchmarkError(f"dev server did not start: {' | '.join(seen + errors) or 'no output'}")

    def cpu_seconds(self) -> float:
        if self.ps is None:
            return 0.0
        try:
            times = self.ps.cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return float(times.user + times.system)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class CpuShare:
    """CPU used over an interval, in cores (1.0 = one core busy for the whole interval)."""

    server: float
    bench: float
    others: float
    machine_busy: float
    seconds: float
    # The main thread runs each process's asyncio loop: near 1.0 means that loop is saturated, whatever
    # the machine has left (the SDK's Rust/WebRTC threads and codec threads are not in it).
    server_loop: float = 0.0
    bench_loop: float = 0.0


class CpuMeter:
    """Snapshots of the machine's, this process's and the server's CPU clocks; `since()` gives the shares."""

    def __init__(self, server: DevServerProcess | None) -> None:
        self.server = server
        self.me = psutil.Process(os.getpid())
        self.mark()

    def _snapshot(self) -> tuple[float, float, float, float, float, float]:
        machine = psutil.cpu_times()
        # Linux already counts guest time inside user/nice; iowait is idle time.
        not_busy = ("idle", "iowait", "guest", "guest_nice")
        busy = sum(getattr(machine, name) for name in machine._fields if name not in not_busy)
        mine = self.me.cpu_times()
        server = self.server.cpu_seconds() if self.server else 0.0
        server_loop = main_thread_seconds(self.server.ps) if self.server and self.server.ps else 0.0
        return (
            time.monotonic(),
            busy,
            mine.user + mine.system,
            server,
            server_loop,
            main_thread_seconds(self.me),
        )

    def mark(self) -> None:
        self._start = self._snapshot()

    def since(self) -> CpuShare:
        now = self._snapshot()
        wall = max(now[0] - self._start[0], 1e-9)
        busy, bench, server, server_loop, bench_loop = ((now[i] - self._start[i]) / wall for i in range(1, 6))
        return CpuShare(
            server=round(server, 3),
            bench=round(bench, 3),
            others=round(max(busy - bench - server, 0.0), 3),
            machine_busy=round(busy, 3),
            seconds=round(wall, 2),
            server_loop=round(server_loop, 3),
            bench_loop=round(bench_loop, 3),
        )


def main_thread_seconds(process: psutil.Process) -> float:
    """CPU seconds of `process`'s main thread (its thread id is its pid), 0 once it is gone."""
    try:
        for thread in process.threads():
            if thread.id == process.pid:
                return float(thread.user_time + thread.system_time)
    except psutil.NoSuchProcess:
        pass
    return 0.0


def summary_ms(samples: list[float]) -> dict[str, float]:
    """Median and p90 (nearest rank) of durations given in seconds, in ms."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1e3, 2),
        "p90_ms": round(p90 * 1e3, 2),
        "min_ms": round(ordered[0] * 1e3, 2),
    }


async def tone(source: rtc.AudioSource, hz: float, amplitude: int, frame_ms: int = 10) -> None:
    """A sine tone in `frame_ms` frames forever; capture_frame paces it at real time once the queue is
    full."""
    samples = SAMPLE_RATE * frame_ms // 1000
    # A whole number of periods per frame would do, but a phase-continuous tone is cheap: precompute one
    # second.
    second = (amplitude * np.sin(2 * np.pi * hz * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.int16)
    offset = 0
    while True:
        frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, samples)
        np.frombuffer(frame.data, dtype=np.int16)[:] = np.take(
            second, np.arange(offset, offset + samples), mode="wrap"
        )
        offset = (offset + samples) % SAMPLE_RATE
        await source.capture_frame(frame)


# Video frames carry their index as 16 black/white cells in the top third (8 columns x 2 rows), so the
# subscriber counts distinct frames exactly whatever resolution the single relayed layer has.
INDEX_BITS = 16
INDEX_COLUMNS = 8


def stamp_index(luma: np.ndarray, index: int) -> None:
    height, width = luma.shape
    cell_w, cell_h = width // INDEX_COLUMNS, height // 6
    for bit in range(INDEX_BITS):
        row, col = divmod(bit, INDEX_COLUMNS)
        luma[row * cell_h : (row + 1) * cell_h, col * cell_w : (col + 1) * cell_w] = (
            235 if index >> bit & 1 else 16
        )


def read_index(luma: np.ndarray) -> int:
    height, width = luma.shape
    cell_w, cell_h = width // INDEX_COLUMNS, height // 6
    index = 0
    for bit in range(INDEX_BITS):
        row, col = divmod(bit, INDEX_COLUMNS)
        y0, x0 = row * cell_h + cell_h // 4, col * cell_w + cell_w // 4
        if luma[y0 : y0 + cell_h // 2, x0 : x0 + cell_w // 2].mean() > 128:
            index |= 1 << bit
    return index


async def video_feed(source: rtc.VideoSource, width: int, height: int, fps: float) -> None:
    """I420 frames at `fps` on the monotonic clock: index cells on top, a scrolling gradient below
    (motion)."""
    buffer = np.full(width * height * 3 // 2, 128, dtype=np.uint8)
    luma = buffer[: width * height].reshape(height, width)
    gradient = np.tile(
        (np.arange(width * 2) * 255 // (width * 2)).astype(np.uint8), (height - height // 3, 1)
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    index = 0
    while True:
        shift = (index * 8) % width
        luma[height // 3 :] = gradient[:, shift : shift + width]
        stamp_index(luma, index)
        source.capture_frame(rtc.VideoFrame(width, height, rtc.VideoBufferType.I420, buffer.tobytes()))
        index += 1
        await asyncio.sleep(max(0.0, start + index / fps - loop.time()))
