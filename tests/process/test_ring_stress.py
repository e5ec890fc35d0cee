"""Stress of the frame ring across real processes: a producer and a consumer process, both doorbells.

Each frame's payload is derived from its sequence number and ends with a CRC, so a frame that arrives
torn, twice, out of order or not at all is detected. Both sides sleep on their doorbell with a long
timeout: a lost wake-up shows up as a timeout report (and a test far slower than its bound), not a hang.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
import zlib
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

import numpy as np
import pytest

from framepool.ipc.ring import implementation
from framepool.ipc.slots import FMT_BYTES, KIND_RESULT
from tests.support.shm import shm_segments
from tests.support.timeouts import EVENT, PROCESS

pytestmark = pytest.mark.process

SLOT_SIZE = 4096
SLOT_COUNT = 8
FRAMES = {"c": 40000, "python": 6000}  # bounds each run to a second or two


def frame_payload(seq: int) -> bytes:
    length = 12 + (seq * 2654435761) % (SLOT_SIZE - 12)
    body = (
        seq.to_bytes(8, "little")
        + ((np.arange(length - 12, dtype=np.uint32) + seq) & 0xFF).astype(np.uint8).tobytes()
    )
    return body + zlib.crc32(body).to_bytes(4, "little")


def check_frame(seq: int, data: memoryview) -> str | None:
    raw = bytes(data)
    if int.from_bytes(raw[:8], "little") != seq:
        return f"frame {seq} carries seq {int.from_bytes(raw[:8], 'little')}"
    if zlib.crc32(raw[:-4]) != int.from_bytes(raw[-4:], "little") or raw != frame_payload(seq):
        return f"frame {seq} is torn"
    return None


def attach_all(impl: Any, conn: Connection) -> tuple[Any, Any, Any]:
    fds = [recv_handle(conn) for _ in range(5)]
    ring = impl.FrameRing.attach(fds[0])
    data_bell = impl.Doorbell.attach(fds[1], fds[2])
    space_bell = impl.Doorbell.attach(fds[3], fds[4])
    ring.bind(data_bell, space_bell)
    return ring, data_bell, space_bell


def run_producer(impl_name: str, conn: Connection, frames: int, seed: int) -> None:
    impl = implementation(impl_name)
    ring, data_bell, space_bell = attach_all(impl, conn)
    pacing = random.Random(seed)
    report: dict[str, Any] = {"waits": 0, "error": None}
    seq = 0
    while seq <= frames:
        flags = impl.FLAG_EOS if seq == frames else 0
        data = frame_payload(seq)
        if ring.write(data, seq, time.monotonic_ns() // 1000, KIND_RESULT, FMT_BYTES, flags, 0, 0, 0):
            seq += 1
            if pacing.random() < 0.01:
                time.sleep(pacing.random() * 0.001)  # pacing only: lets the consumer catch up and sleep
            continue
        space_bell.prepare_sleep()
        # Re-check by writing, as the daemon does: a refused write re-arms the flag that makes release() ring;
        # free_slots() would miss a release that began before this stall and consumed the flag.
        if ring.write(data, seq, time.monotonic_ns() // 1000, KIND_RESULT, FMT_BYTES, flags, 0, 0, 0):
            space_bell.cancel_sleep()
            seq += 1
            continue
        report["waits"] += 1
        if not space_bell.wait(EVENT):
            report["error"] = f"producer lost a wake-up at frame {seq}"
            break
    conn.send(report)
    ring.close()
    data_bell.close()
    space_bell.close()


def run_consumer(impl_name: str, conn: Connection, seed: int) -> None:
    impl = implementation(impl_name)
    ring, data_bell, space_bell = attach_all(impl, conn)
    pacing = random.Random(seed)
    report: dict[str, Any] = {"received": 0, "waits": 0, "error": None}
    while report["error"] is None:
        got = ring.peek()
        if got is None:
            data_bell.prepare_sleep()
            if ring.pending() == 0:
                report["waits"] += 1
                if not data_bell.wait(EVENT):
                    report["error"] = f"consumer lost a wake-up after {report['received']} frames"
            data_bell.cancel_sleep()
            continue
        header, view = got
        report["error"] = (
            check_frame(report["received"], view)
            if header.seq == report["received"]
            else (f"expected frame {report['received']}, got {header.seq}")
        )
        view.release()
        if pacing.random() < 0.01:
            time.sleep(pacing.random() * 0.001)  # pacing only: lets the ring fill so the producer waits
        ring.release()
        report["received"] += 1
        if header.flags & impl.FLAG_EOS:
            break
    report["stats"] = ring.stats()
    conn.send(report)
    ring.close()
    data_bell.close()
    space_bell.close()


@pytest.mark.parametrize(
    ("impl_name", "consumer_impl"), [("c", "c"), ("python", "python"), ("c", "python"), ("python", "c")]
)
def test_every_frame_arrives_once_in_order_untorn(impl_name: str, consumer_impl: str) -> None:
    impl = implementation(impl_name)
    shm_before = shm_segments()
    ctx = multiprocessing.get_context("spawn")
    ring = impl.FrameRing.create(SLOT_COUNT, SLOT_SIZE, impl.POLICY_BLOCK)
    data_bell, space_bell = impl.Doorbell.create(), impl.Doorbell.create()
    fds = [ring.fd, data_bell.event_fd, data_bell.page_fd, space_bell.event_fd, space_bell.page_fd]
    frames = min(FRAMES[impl_name], FRAMES[consumer_impl])
    links = [ctx.Pipe(), ctx.Pipe()]
    procs = [
        ctx.Process(target=run_producer, args=(impl_name, links[0][1], frames, 1), name="ring-producer"),
        ctx.Process(target=run_consumer, args=(consumer_impl, links[1][1], 2), name="ring-consumer"),
    ]
    started = time.monotonic()
    try:
        for proc, (parent_end, _) in zip(procs, links, strict=True):
            proc.start()
            for fd in fds:
                send_handle(parent_end, fd, proc.pid)
        ring.close()  # the children hold their own fds and mappings now
        data_bell.close()
        space_bell.close()
        reports = []
        for parent_end, _ in links:
            assert parent_end.poll(PROCESS), "a ring process never reported"
            reports.append(parent_end.recv())
        for proc in procs:
            proc.join(PROCESS)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    elapsed = time.monotonic() - started
    producer, consumer = reports
    assert producer["error"] is None and consumer["error"] is None
    assert consumer["received"] == frames + 1
    assert consumer["stats"] == {"written": frames + 1, "dropped": 0, "skipped": 0, "read": frames + 1}
    assert producer["waits"] > 0 and consumer["waits"] > 0  # both doorbells were exercised
    assert elapsed < EVENT  # no doorbell wait ran out
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert shm_segments() <= shm_before


def hold_a_ring(impl_name: str, conn: Connection) -> None:
    impl = implementation(impl_name)
    ring = impl.FrameRing.create(4, 1 << 20, impl.POLICY_LATEST)
    bell = impl.Doorbell.create()
    conn.send((ring.fd, bell.page_fd))
    bell.wait(None)  # until killed


@pytest.mark.parametrize("impl_name", ["c", "python"])
def test_sigkill_leaves_nothing_in_dev_shm(impl_name: str) -> None:
    shm_before = shm_segments()
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    proc = ctx.Process(target=hold_a_ring, args=(impl_name, child_end), name="ring-holder")
    proc.start()
    try:
        assert parent_end.poll(PROCESS), "the ring holder never started"
        ring_fd, page_fd = parent_end.recv()
        assert os.readlink(f"/proc/{proc.pid}/fd/{ring_fd}").startswith("/memfd:framepool-ring")
        assert os.readlink(f"/proc/{proc.pid}/fd/{page_fd}").startswith("/memfd:framepool-doorbell")
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(PROCESS)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert proc.exitcode == -signal.SIGKILL
    assert not os.path.exists(f"/proc/{proc.pid}/fd")
    assert shm_segments() <= shm_before
