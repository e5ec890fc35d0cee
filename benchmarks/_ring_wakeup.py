"""Baselines of the ring benchmark: the CPU of one cross-process wake-up (parent and benchmark child
processes).

- ping-pong: two pinned processes bounce an eventfd; the side woken went idle microseconds ago (on a
  virtual machine with the haltpoll cpuidle driver, its vCPU is still polling), the cheapest wake-up.
- paced: one eventfd write every PERIOD_S to a process asleep in read, as the paced hand-off wakes its
  consumer; by then the sleeper's vCPU has halted, and waking it (an inter-processor interrupt through
  the hypervisor) costs more on both sides.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle

from _ring_common import pin
from _ring_paced import PERIOD_NS, clock_pair_ns


def ping_pong_side(role: str, conn: Connection, rounds: int) -> None:
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


def measure_wakeup(rounds: int, pace: bool = False) -> float:
    """CPU µs (both sides together) of one cross-process wake-up between pinned processes.

    An eventfd ping-pong, or with `pace` one eventfd write per PERIOD_S to a process asleep in read (how the
    paced hand-off wakes its consumer)."""
    ctx = multiprocessing.get_context("spawn")
    side = paced_side if pace else ping_pong_side
    flags = os.EFD_SEMAPHORE if pace else 0  # paced: a late reader still reads once per write
    fds = [os.eventfd(0, flags), os.eventfd(0, flags)]
    links = [ctx.Pipe() for _ in range(2)]
    procs = [
        ctx.Process(target=side, args=(r, link[1], rounds), daemon=True)
        for r, link in zip("ab", links, strict=True)
    ]
    try:
        for index, (proc, (end, _)) in enumerate(zip(procs, links, strict=True)):
            proc.start()
            send_handle(end, fds[index], proc.pid)
            send_handle(end, fds[1 - index], proc.pid)
        for end, _ in links:
            end.recv()
        cpu = float(sum(end.recv() for end, _ in links))
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        for fd in fds:
            os.close(fd)
    return cpu if pace else cpu * 1e6 / (2 * rounds)


def paced_side(role: str, conn: Connection, rounds: int) -> None:
    """The paced wake-up baseline: "a" writes b's eventfd once per PERIOD_S; "b" sleeps in read in between.

    Side a reports the thread CPU of its writes, side b its whole process CPU, in µs per wake-up."""
    pin(0 if role == "a" else 1)
    mine, other = recv_handle(conn), recv_handle(conn)
    warmup, overhead = rounds // 10, clock_pair_ns()
    spent = cpu_start = 0
    conn.send("ready")
    if role == "a":
        start = time.monotonic_ns()
        for seq in range(rounds):
            pause = start + seq * PERIOD_NS - time.monotonic_ns()
            if pause > 0:
                time.sleep(pause / 1e9)
            before = time.thread_time_ns()
            os.eventfd_write(other, 1)
            if seq >= warmup:
                spent += time.thread_time_ns() - before - overhead
    else:
        for seq in range(rounds):
            if seq == warmup:
                cpu_start = time.process_time_ns()
            os.eventfd_read(mine)
        spent = time.process_time_ns() - cpu_start
    conn.send(spent / 1000 / (rounds - warmup))
