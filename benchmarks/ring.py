"""Micro-benchmark: handing frames from one process to another (run on the supervisor's machine).

Compares, in one run and with the same deterministic frames, framepool's shared-memory ring (producer and
consumer in two pinned processes, doorbell wake-ups) with multiprocessing.Queue, a length-prefixed
socketpair and, as the baseline, a plain copy of the frame into a reused buffer. Frames: 1080p and 720p
I420, 10 ms of 48 kHz mono int16 audio. Modes: `single` (one frame in flight: the producer waits for the
consumer's ack) and `batched` (the producer writes as fast as the transport takes; the consumer drains
everything per wake-up). Reported per row: CPU µs per frame on each side (process CPU clock, so helper
threads such as mp.Queue's feeder count), one-way latency p50/p99 (a CLOCK_MONOTONIC stamp travels with
the frame) and frames/s. The cost of one cross-process wake-up (eventfd ping-pong) is measured in the same
run, so the ratios compare like with like on whatever machine runs this.

    python benchmarks/ring.py [--quick] [--json]

With --json: {"env": {...}, "results": [{transport, frame, mode, cpu_us_producer, cpu_us_consumer, p50_us,
p99_us, frames_per_s}, ...], "ratios": {...}, "targets_met": {...}}; every figure is a median over REPEATS runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import socket
import statistics
import struct
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

from framepool import ring as fp

TRANSPORTS = ["framepool", "mp.Queue", "socketpair", "copy"]
MODES = ["single", "batched"]
# name: (bytes, kind, fmt, a, b, c)
FRAMES = {
    "1080p": (1920 * 1080 * 3 // 2, fp.KIND_VIDEO, fp.FMT_I420, 1920, 1080, 0),
    "720p": (1280 * 720 * 3 // 2, fp.KIND_VIDEO, fp.FMT_I420, 1280, 720, 0),
    "audio10ms": (480 * 2, fp.KIND_AUDIO, fp.FMT_S16, 48000, 1, 480),
}
# Frames per run (full mode); mp.Queue is slow enough that fewer frames give stable figures.
COUNTS = {"1080p": 400, "720p": 600, "audio10ms": 20000}
SLOW_TRANSPORT_SHARE = {"mp.Queue": 4, "socketpair": 2}
BATCH_SLOTS = {"1080p": 8, "720p": 8, "audio10ms": 64}
WAKEUP_ROUNDS = 5000
REPEATS = 3  # each configuration runs this often (full mode); the table shows medians
_SOCK_HEADER = struct.Struct("<QQI")  # seq, monotonic ns, length


@dataclass
class Run:
    transport: str
    frame: str
    mode: str
    count: int
    warmup: int


@dataclass
class Result:
    transport: str
    frame: str
    mode: str
    cpu_us_producer: float
    cpu_us_consumer: float
    p50_us: float
    p99_us: float
    frames_per_s: float


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


# -- framepool ---------------------------------------------------------------------------------------


def attach_rings(conn: Connection) -> tuple[Any, Any, Any, Any, Any]:
    fds = [recv_handle(conn) for _ in range(8)]
    ring, ack = fp.FrameRing.attach(fds[0]), fp.FrameRing.attach(fds[1])
    bells = [fp.Doorbell.attach(fds[i], fds[i + 1]) for i in (2, 4, 6)]
    return ring, ack, *bells


def wait_until(bell: Any, ready: Any) -> None:
    """Sleep on `bell` until `ready()`; prepare, re-check, then wait: no wake-up can be lost."""
    while not ready():
        bell.prepare_sleep()
        if ready():
            bell.cancel_sleep()
            return
        bell.wait(None)


def framepool_producer(run: Run, conn: Connection) -> dict[str, Any]:
    ring, ack, data_bell, space_bell, ack_bell = attach_rings(conn)
    ring.bind(data_bell, None)
    _, kind, fmt, a, b, c = FRAMES[run.frame]
    data, meter = frame_bytes(run.frame), Meter(run.warmup)
    conn.send("ready")
    conn.recv()
    for seq in range(run.count):
        meter.tick(seq)
        while not ring.write(data, seq, time.monotonic_ns() // 1000, kind, fmt, 0, a, b, c):
            wait_until(space_bell, lambda: ring.free_slots() > 0)
        if run.mode == "single":
            wait_until(ack_bell, lambda: ack.pending() > 0)
            ack.peek()
            ack.release()
    return meter.report(run)


def framepool_consumer(run: Run, conn: Connection) -> dict[str, Any]:
    ring, ack, data_bell, space_bell, ack_bell = attach_rings(conn)
    ring.bind(None, space_bell)
    ack.bind(ack_bell, None)
    meter, latencies = Meter(run.warmup), []
    conn.send("ready")
    done = 0
    while done < run.count:
        wait_until(data_bell, lambda: ring.pending() > 0)
        while (got := ring.peek()) is not None:  # drain everything per wake-up
            now_us = time.monotonic_ns() // 1000
            meter.tick(done)
            latencies.append(now_us - got[0].ts_us)
            del got
            ring.release()
            done += 1
            if run.mode == "single":
                ack.write(b"", done, 0, fp.KIND_RESULT, fp.FMT_BYTES, 0, 0, 0, 0)
    return meter.report(run, latencies_us=latencies[run.warmup :])


def framepool_fds(run: Run) -> tuple[list[int], list[Any]]:
    slots = 1 if run.mode == "single" else BATCH_SLOTS[run.frame]  # single: one frame in flight
    ring = fp.FrameRing.create(slots, FRAMES[run.frame][0], fp.POLICY_BLOCK)
    ack = fp.FrameRing.create(2, 64, fp.POLICY_BLOCK)
    bells = [fp.Doorbell.create() for _ in range(3)]
    fds = [ring.fd, ack.fd] + [fd for bell in bells for fd in (bell.event_fd, bell.page_fd)]
    return fds, [ring, ack, *bells]


# -- multiprocessing.Queue and socketpair --------------------------------------------------------------


def queue_producer(run: Run, conn: Connection, frames: Any, acks: Any) -> dict[str, Any]:
    data, meter = frame_bytes(run.frame), Meter(run.warmup)
    conn.send("ready")
    conn.recv()
    for seq in range(run.count):
        meter.tick(seq)
        frames.put((seq, time.monotonic_ns(), data))
        if run.mode == "single":
            acks.get()
    return meter.report(run)


def queue_consumer(run: Run, conn: Connection, frames: Any, acks: Any) -> dict[str, Any]:
    meter, latencies = Meter(run.warmup), []
    conn.send("ready")
    for done in range(run.count):
        meter.tick(done)
        _, stamp, _ = frames.get()
        latencies.append((time.monotonic_ns() - stamp) / 1000)
        if run.mode == "single":
            acks.put(done)
    return meter.report(run, latencies_us=latencies[run.warmup :])


def socket_producer(run: Run, conn: Connection) -> dict[str, Any]:
    sock = socket.socket(fileno=recv_handle(conn))
    data, meter = frame_bytes(run.frame), Meter(run.warmup)
    conn.send("ready")
    conn.recv()
    for seq in range(run.count):
        meter.tick(seq)
        sock.sendall(_SOCK_HEADER.pack(seq, time.monotonic_ns(), len(data)))
        sock.sendall(data)
        if run.mode == "single":
            sock.recv(1)
    return meter.report(run)


def socket_consumer(run: Run, conn: Connection) -> dict[str, Any]:
    sock = socket.socket(fileno=recv_handle(conn))
    buffer = memoryview(bytearray(FRAMES[run.frame][0] + _SOCK_HEADER.size))  # reused, like a ring slot
    meter, latencies = Meter(run.warmup), []
    conn.send("ready")
    for done in range(run.count):
        meter.tick(done)
        _, stamp, length = _SOCK_HEADER.unpack(recv_exactly(sock, buffer[: _SOCK_HEADER.size]))
        recv_exactly(sock, buffer[:length])
        latencies.append((time.monotonic_ns() - stamp) / 1000)
        if run.mode == "single":
            sock.send(b"a")
    return meter.report(run, latencies_us=latencies[run.warmup :])


def recv_exactly(sock: socket.socket, into: memoryview) -> memoryview:
    got = 0
    while got < len(into):
        n = sock.recv_into(into[got:])
        if n == 0:
            raise ConnectionError("producer closed the socket mid-frame")
        got += n
    return into


# -- process orchestration ----------------------------------------------------------------------------


def side_main(role: str, run: Run, conn: Connection, queues: tuple[Any, Any] | None) -> None:
    """Entry point of a benchmark child process (spawned): one side of one transport."""
    pin(0 if role == "producer" else 1)
    if run.transport == "framepool":
        report = (framepool_producer if role == "producer" else framepool_consumer)(run, conn)
    elif run.transport == "socketpair":
        report = (socket_producer if role == "producer" else socket_consumer)(run, conn)
    else:
        assert queues is not None
        report = (queue_producer if role == "producer" else queue_consumer)(run, conn, *queues)
    conn.send(report)


def run_pair(run: Run) -> Result:
    ctx = multiprocessing.get_context("spawn")
    queues = (ctx.Queue(BATCH_SLOTS[run.frame]), ctx.Queue()) if run.transport == "mp.Queue" else None
    links = [ctx.Pipe() for _ in range(2)]
    procs = [
        ctx.Process(target=side_main, args=(role, run, link[1], queues), daemon=True)
        for role, link in zip(["producer", "consumer"], links, strict=True)
    ]
    owned: list[Any] = []
    try:
        for proc in procs:
            proc.start()
        owned = send_transport(run, procs, [link[0] for link in links])
        for parent_end, _ in links:
            parent_end.recv()  # "ready"
        links[0][0].send("go")
        producer, consumer = (parent_end.recv() for parent_end, _ in links)
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        for obj in owned:
            obj.close()
    return summarise(
        run, producer["cpu_us"], consumer["cpu_us"], consumer["latencies_us"], consumer["wall_s"]
    )


def send_transport(run: Run, procs: list[Any], ends: list[Connection]) -> list[Any]:
    """Hands each child its fds (rings and doorbells, or one end of a socketpair); returns what to close."""
    if run.transport == "framepool":
        fds, owned = framepool_fds(run)
        for proc, end in zip(procs, ends, strict=True):
            for fd in fds:
                send_handle(end, fd, proc.pid)
        return owned
    if run.transport == "socketpair":
        pair = socket.socketpair()
        for proc, end, sock in zip(procs, ends, pair, strict=True):
            send_handle(end, sock.fileno(), proc.pid)
        return list(pair)
    return []


def summarise(
    run: Run, cpu_producer: float, cpu_consumer: float, latencies: list[float], wall: float
) -> Result:
    import numpy as np

    return Result(
        run.transport,
        run.frame,
        run.mode,
        round(cpu_producer, 2),
        round(cpu_consumer, 2),
        round(float(np.percentile(latencies, 50)), 1) if latencies else 0.0,
        round(float(np.percentile(latencies, 99)), 1) if latencies else 0.0,
        round((run.count - run.warmup) / wall, 1),
    )


def run_copy(run: Run) -> Result:
    """The baseline: one copy of the frame into a reused buffer, in one process (cache as warm as it gets)."""
    data = frame_bytes(run.frame)
    target = memoryview(bytearray(len(data)))
    meter, per_copy = Meter(run.warmup), []
    for seq in range(run.count):
        meter.tick(seq)
        start = time.perf_counter_ns()
        target[:] = data
        per_copy.append((time.perf_counter_ns() - start) / 1000)
    report = meter.report(run)
    return summarise(run, report["cpu_us"], 0.0, per_copy[run.warmup :], report["wall_s"])


def wakeup_side(role: str, conn: Connection, rounds: int) -> None:
    pin(0 if role == "a" else 1)
    mine, other = recv_handle(conn), recv_handle(conn)
    conn.send("ready")
    start = time.process_time()
    for _ in range(rounds):
        if role == "a":
            os.eventfd_write(other, 1)
            os.eventfd_read(mine)
        else:
            os.eventfd_read(mine)
            os.eventfd_write(other, 1)
    conn.send(time.process_time() - start)


def measure_wakeup(rounds: int) -> float:
    """CPU µs (both sides together) of one cross-process wake-up: an eventfd ping-pong between pinned processes."""
    ctx = multiprocessing.get_context("spawn")
    fds = [os.eventfd(0), os.eventfd(0)]
    links = [ctx.Pipe() for _ in range(2)]
    procs = [
        ctx.Process(target=wakeup_side, args=(r, link[1], rounds), daemon=True)
        for r, link in zip("ab", links, strict=True)
    ]
    try:
        for index, (proc, (end, _)) in enumerate(zip(procs, links, strict=True)):
            proc.start()
            send_handle(end, fds[index], proc.pid)
            send_handle(end, fds[1 - index], proc.pid)
        for end, _ in links:
            end.recv()
        cpu = sum(end.recv() for end, _ in links)
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        for fd in fds:
            os.close(fd)
    return cpu * 1e6 / (2 * rounds)


def plan(quick: bool) -> list[Run]:
    runs = []
    for frame, count in COUNTS.items():
        for mode in MODES:
            for transport in TRANSPORTS:
                n = count // SLOW_TRANSPORT_SHARE.get(transport, 1) // (5 if quick else 1)
                runs.append(Run(transport, frame, mode, max(n, 40), max(n, 40) // 10))
    return runs


def ratios(results: list[Result], wakeup_us: float) -> dict[str, float]:
    def row(transport: str, frame: str, mode: str) -> Result:
        return next(r for r in results if (r.transport, r.frame, r.mode) == (transport, frame, mode))

    def both(r: Result) -> float:
        return r.cpu_us_producer + r.cpu_us_consumer

    fp_single, fp_batched = row("framepool", "1080p", "single"), row("framepool", "1080p", "batched")
    copy = row("copy", "1080p", "single")
    return {
        "wakeup_cpu_us": round(wakeup_us, 2),
        "framepool_1080p_single_cpu_vs_copy_plus_wakeup": round(
            both(fp_single) / (both(copy) + wakeup_us), 3
        ),
        # single mode pays two wake-ups per frame: the frame's and the ack's
        "framepool_1080p_single_cpu_vs_copy_plus_two_wakeups": round(
            both(fp_single) / (both(copy) + 2 * wakeup_us), 3
        ),
        "framepool_1080p_batched_cpu_vs_copy_plus_wakeup": round(
            both(fp_batched) / (both(copy) + wakeup_us), 3
        ),
        "mpqueue_vs_framepool_1080p_single_cpu": round(
            both(row("mp.Queue", "1080p", "single")) / both(fp_single), 1
        ),
        "mpqueue_vs_framepool_1080p_batched_cpu": round(
            both(row("mp.Queue", "1080p", "batched")) / both(fp_batched), 1
        ),
        "framepool_audio10ms_batched_cpu_us_both_sides": round(
            both(row("framepool", "audio10ms", "batched")), 2
        ),
    }


def targets_met(summary: dict[str, float]) -> dict[str, bool]:
    return {
        "1080p_single_cpu_le_1.3x_copy_plus_wakeup": summary["framepool_1080p_single_cpu_vs_copy_plus_wakeup"]
        <= 1.3,
        "mpqueue_ge_40x_framepool_1080p_single": summary["mpqueue_vs_framepool_1080p_single_cpu"] >= 40,
        "audio10ms_batched_le_5us_both_sides": summary["framepool_audio10ms_batched_cpu_us_both_sides"] <= 5,
    }


def median_result(trials: list[Result]) -> Result:
    """Field-wise median over repeated runs of one configuration."""
    first = trials[0]
    numbers = {
        field: round(statistics.median(getattr(t, field) for t in trials), 2)
        for field in ("cpu_us_producer", "cpu_us_consumer", "p50_us", "p99_us", "frames_per_s")
    }
    return Result(first.transport, first.frame, first.mode, **numbers)


def environment() -> dict[str, Any]:
    import numpy as np

    with open("/proc/cpuinfo") as cpuinfo:
        model = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?"
        )
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu_model": model,
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "kernel": platform.release(),
    }


def print_table(results: list[Result], summary: dict[str, float]) -> None:
    print(
        f"{'transport':<11} {'frame':<10} {'mode':<8} {'cpu µs prod':>12} {'cpu µs cons':>12} "
        f"{'p50 µs':>9} {'p99 µs':>9} {'frames/s':>10}"
    )
    for r in results:
        print(
            f"{r.transport:<11} {r.frame:<10} {r.mode:<8} {r.cpu_us_producer:>12.1f} {r.cpu_us_consumer:>12.1f} "
            f"{r.p50_us:>9.1f} {r.p99_us:>9.1f} {r.frames_per_s:>10.0f}"
        )
    print()
    for name, value in summary.items():
        print(f"{name:<52} {value}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames per run (a smoke test, noisier)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    repeats = 1 if args.quick else REPEATS
    wakeup_us = statistics.median(
        measure_wakeup(WAKEUP_ROUNDS // (5 if args.quick else 1)) for _ in range(repeats)
    )
    results = []
    for run in plan(args.quick):
        trials = [run_copy(run) if run.transport == "copy" else run_pair(run) for _ in range(repeats)]
        results.append(median_result(trials))
        if not args.json:
            print(f"  measured {run.transport} {run.frame} {run.mode}", file=sys.stderr)
    summary = ratios(results, wakeup_us)
    if args.json:
        document = {"env": environment(), "results": [asdict(r) for r in results], "ratios": summary}
        print(json.dumps({**document, "targets_met": targets_met(summary)}))
    else:
        print_table(results, summary)
        print(f"targets met: {targets_met(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
