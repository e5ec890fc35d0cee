"""The ring benchmark's `paced` mode: frames handed off at the source's pace, no ack (benchmark child
processes).

This is how the supervisor hands frames over in production: the livekit SDK delivers a video frame every
~33 ms, the supervisor writes it into the stream's ring and rings the doorbell, nobody acknowledges it,
and the worker, idle since the previous frame, is woken once. Here the producer writes one frame every
PERIOD_S, the same for every transport and baseline: 15 ms, long enough for every consumer, mp.Queue's
(milliseconds of CPU per 1080p frame on each side) included, to be asleep again before the next frame on
a machine shared with other work (`checks.paced_kept_pace` in the report), and short enough for a run of
about a second.

CPU is accounted per side, exactly:
- producer: the thread CPU time spent inside the hand-off call(s) (`time.thread_time_ns` around
  write + ring, put, or sendall), less the cost of reading that clock, plus the CPU of the producer's
  helper threads (mp.Queue's feeder, which pickles and writes the pipe) over the measured window. The
  pacing sleep and its timer wake-up are left out: the real supervisor does not pay them, the SDK's
  delivery wakes it anyway.
- consumer: the whole process CPU from before the first measured frame's wait to the last frame
  (wake-up, receive or peek, a numpy view of the frame, release).
framepool's producer does not bind the data doorbell to the ring; it calls `Doorbell.ring()` itself after
each write (the same C path `write` takes when bound) to count the eventfd writes that really happened:
one per frame means the consumer was asleep for every frame and paid exactly one wake-up.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle
from typing import Any

from _ring_common import (
    FRAMES,
    SOCK_HEADER,
    Meter,
    Run,
    attach_rings,
    frame_bytes,
    recv_exactly,
    wait_until,
    write_or_wait,
)

from framepool.ipc.slots import KIND_VIDEO

PERIOD_S = 0.015
PERIOD_NS = int(PERIOD_S * 1e9)


def ring_slots(frame: str) -> int:
    """The slots the supervisor gives a stream of these frames by default (parent process only: the import
    is heavy), so the producer has as many slots to cycle through as in production."""
    from framepool.pool import ring_slots as supervisor_ring_slots
    from framepool.processors.api import AudioFormat, VideoFormat
    from framepool.settings import Settings

    kind = FRAMES[frame][1]
    slots: int = supervisor_ring_slots(
        Settings(), VideoFormat() if kind == KIND_VIDEO else AudioFormat(frame_ms=10)
    )
    return slots


def frame_array(frame: str, buffer: Any) -> Any:
    """What a processor works on: a numpy view (no copy) of the luma plane, or of the audio samples."""
    import numpy as np

    _, kind, _, width, height, _ = FRAMES[frame]
    if kind == KIND_VIDEO:
        return np.frombuffer(buffer, np.uint8, count=width * height).reshape(height, width)
    return np.frombuffer(buffer, np.int16)


def clock_pair_ns() -> int:
    """What two back-to-back `thread_time_ns` reads add to an interval measured with them (median)."""
    pairs = []
    for _ in range(2001):
        before = time.thread_time_ns()
        pairs.append(time.thread_time_ns() - before)
    return sorted(pairs)[len(pairs) // 2]


def paced_producer(run: Run, conn: Connection, hand_off: Callable[[int], int]) -> dict[str, Any]:
    """Calls `hand_off(seq)` once per period; `hand_off` returns how many eventfd writes it made."""
    overhead = clock_pair_ns()
    inside = rung = process_start = thread_start = 0
    conn.send("ready")
    conn.recv()  # "go"
    start = time.monotonic_ns()
    for seq in range(run.count):
        if seq == run.warmup:
            inside = rung = 0
            process_start, thread_start = time.process_time_ns(), time.thread_time_ns()
        pause = start + seq * PERIOD_NS - time.monotonic_ns()
        if pause > 0:
            time.sleep(pause / 1e9)
        before = time.thread_time_ns()
        rung += hand_off(seq)
        inside += time.thread_time_ns() - before - overhead
    conn.recv()  # "drained": the consumer holds every frame, so helper threads have nothing left to send
    helpers = (time.process_time_ns() - process_start) - (time.thread_time_ns() - thread_start)
    measured = run.count - run.warmup
    return {
        "cpu_us": (inside + max(helpers, 0)) / 1000 / measured,
        "doorbell_writes_per_frame": rung / measured,
    }


def framepool_producer(run: Run, conn: Connection) -> dict[str, Any]:
    ring, _, data_bell, space_bell, _ = attach_rings(conn)
    ring.bind(None, space_bell)  # data doorbell rung below, explicitly, to count the eventfd writes
    _, kind, fmt, a, b, c = FRAMES[run.frame]
    data = frame_bytes(run.frame)
    stalls = 0

    def hand_off(seq: int) -> int:
        nonlocal stalls  # the consumer fell a whole ring behind (a loaded machine): reported, not hidden
        stalls += write_or_wait(ring, space_bell, data, seq, kind, fmt, a, b, c)
        return int(data_bell.ring())

    report = paced_producer(run, conn, hand_off)
    return {**report, "stalls": stalls}


def framepool_consumer(run: Run, conn: Connection) -> dict[str, Any]:
    ring, _, data_bell, space_bell, _ = attach_rings(conn)
    ring.bind(None, space_bell)
    frame_array(run.frame, bytes(FRAMES[run.frame][0]))  # numpy imported before the measurement
    meter, latencies = Meter(run.warmup), []
    conn.send("ready")
    for done in range(run.count):
        meter.tick(done)  # before the wait: the window holds every measured frame's wake-up
        wait_until(data_bell, lambda: ring.pending() > 0)
        header, view = ring.peek()
        pixels = frame_array(run.frame, view)
        latencies.append(time.monotonic_ns() // 1000 - header.ts_us)
        del pixels, view
        ring.release()
    return meter.report(run, latencies_us=latencies[run.warmup :])


def queue_producer(run: Run, conn: Connection, frames: Any, _acks: Any) -> dict[str, Any]:
    data = frame_bytes(run.frame)

    def hand_off(seq: int) -> int:
        frames.put((seq, time.monotonic_ns(), data))
        return 0

    return paced_producer(run, conn, hand_off)


def queue_consumer(run: Run, conn: Connection, frames: Any, _acks: Any) -> dict[str, Any]:
    frame_array(run.frame, bytes(FRAMES[run.frame][0]))
    meter, latencies = Meter(run.warmup), []
    conn.send("ready")
    for done in range(run.count):
        meter.tick(done)
        _, stamp, payload = frames.get()
        pixels = frame_array(run.frame, payload)
        latencies.append((time.monotonic_ns() - stamp) / 1000)
        del pixels, payload
    return meter.report(run, latencies_us=latencies[run.warmup :])


def socket_producer(run: Run, conn: Connection) -> dict[str, Any]:
    sock = socket.socket(fileno=recv_handle(conn))
    data = frame_bytes(run.frame)

    def hand_off(seq: int) -> int:
        sock.sendall(SOCK_HEADER.pack(seq, time.monotonic_ns(), len(data)))
        sock.sendall(data)
        return 0

    return paced_producer(run, conn, hand_off)


def socket_consumer(run: Run, conn: Connection) -> dict[str, Any]:
    sock = socket.socket(fileno=recv_handle(conn))
    buffer = memoryview(bytearray(FRAMES[run.frame][0] + SOCK_HEADER.size))  # reused, like a ring slot
    frame_array(run.frame, buffer[: FRAMES[run.frame][0]])
    meter, latencies = Meter(run.warmup), []
    conn.send("ready")
    for done in range(run.count):
        meter.tick(done)
        _, stamp, length = SOCK_HEADER.unpack(recv_exactly(sock, buffer[: SOCK_HEADER.size]))
        pixels = frame_array(run.frame, recv_exactly(sock, buffer[:length]))
        latencies.append((time.monotonic_ns() - stamp) / 1000)
        del pixels
    return meter.report(run, latencies_us=latencies[run.warmup :])


def copy_baseline(run: Run) -> dict[str, Any]:
    """The plain copy at the same pace (one process): what a cache gone cold during the pause costs a copy."""
    data = frame_bytes(run.frame)
    target = memoryview(bytearray(len(data)))
    overhead = clock_pair_ns()
    inside, per_copy = 0, []
    start = time.monotonic_ns()
    for seq in range(run.count):
        pause = start + seq * PERIOD_NS - time.monotonic_ns()
        if pause > 0:
            time.sleep(pause / 1e9)
        before = time.thread_time_ns()
        target[:] = data
        spent = time.thread_time_ns() - before - overhead
        if seq >= run.warmup:
            inside += spent
            per_copy.append(spent / 1000)
    measured = run.count - run.warmup
    return {"cpu_us": inside / 1000 / measured, "latencies_us": per_copy, "wall_s": measured * PERIOD_S}
