"""What both sides of every ring-benchmark mode share: frames, pinning, the CPU meter, doorbell sleeps.

Runs in the benchmark's child processes (spawned by `benchmarks/ring.py`) and in its parent.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle
from typing import Any

from framepool.ipc import ring as fp
from framepool.ipc.slots import FMT_I420, FMT_S16, KIND_AUDIO, KIND_VIDEO

# name: (bytes, kind, fmt, a, b, c): the raw descriptor words, as framepool.ipc.slots encodes these frames
FRAMES = {
    "1080p": (1920 * 1080 * 3 // 2, KIND_VIDEO, FMT_I420, 1920, 1080, 0),
    "720p": (1280 * 720 * 3 // 2, KIND_VIDEO, FMT_I420, 1280, 720, 0),
    "audio10ms": (480 * 2, KIND_AUDIO, FMT_S16, 48000, 1, 480),
}
SOCK_HEADER = struct.Struct("<QQI")  # seq, monotonic ns, length


@dataclass
class Run:
    transport: str
    frame: str
    mode: str
    count: int
    warmup: int


def frame_bytes(name: str) -> bytes:
    """Deterministic frame contents: the same bytes on every run and in every process."""
    return random.Random(name).randbytes(FRAMES[name][0])


def pin(cpu: int) -> None:
    if (os.cpu_count() or 1) >= 2:  # producer and consumer on different cores, as in production
        os.sched_setaffinity(0, {cpu})


class Meter:
    """CPU and wall time of this process from the end of the warm-up to the last frame."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.cpu = self.wall = 0.0

    def tick(self, done: int) -> None:
        if done == self.warmup:
            self.cpu, self.wall = time.process_time(), time.perf_counter()

    def report(self, run: Run, **extra: Any) -> dict[str, Any]:
        measured = run.count - run.warmup
        return {
            "cpu_us": (time.process_time() - self.cpu) * 1e6 / measured,
            "wall_s": time.perf_counter() - self.wall,
            **extra,
        }


def attach_rings(conn: Connection) -> tuple[Any, Any, Any, Any, Any]:
    """The frame ring, the ack ring and three doorbells (data, space, ack), from fds sent by the parent."""
    fds = [recv_handle(conn) for _ in range(8)]
    ring, ack = fp.FrameRing.attach(fds[0]), fp.FrameRing.attach(fds[1])
    bells = [fp.Doorbell.attach(fds[i], fds[i + 1]) for i in (2, 4, 6)]
    return ring, ack, *bells


def wait_until(bell: Any, ready: Any) -> None:
    """Sleep on `bell` until `ready()`; prepare, re-check, then wait: no wake-up can be lost. For a side
    waiting for frames (a data or ack doorbell); a producer waiting for space uses `write_or_wait`."""
    while not ready():
        bell.prepare_sleep()
        if ready():
            bell.cancel_sleep()
            return
        bell.wait(None)


def write_or_wait(
    ring: Any, space_bell: Any, data: Any, seq: int, kind: int, fmt: int, a: int, b: int, c: int
) -> int:
    """Writes the frame (stamped at the write that succeeds), sleeping on `space_bell` while the ring is full;
    returns how many writes found it full.

    The re-check after prepare_sleep() is a write, as in pool_stream.push_wait: a refused write re-arms the
    flag that makes release() ring. Re-checking with free_slots() instead loses the wake-up when a release
    that started before this stall consumes the flag, and both sides sleep for ever."""
    stalls = 0
    while not ring.write(data, seq, time.monotonic_ns() // 1000, kind, fmt, 0, a, b, c):
        stalls += 1
        space_bell.prepare_sleep()
        if ring.write(data, seq, time.monotonic_ns() // 1000, kind, fmt, 0, a, b, c):
            space_bell.cancel_sleep()
            break
        space_bell.wait(None)
    return stalls


def recv_exactly(sock: socket.socket, into: memoryview) -> memoryview:
    got = 0
    while got < len(into):
        n = sock.recv_into(into[got:])
        if n == 0:
            raise ConnectionError("producer closed the socket mid-frame")
        got += n
    return into
