"""Unit tests of the frame ring, run against the C extension and the pure-Python reference, and crossed."""

from __future__ import annotations

import asyncio
import fcntl
import mmap
import os
import struct
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framepool.ipc import pyring
from framepool.ipc.ring import implementation
from tests.support.timeouts import EVENT

IMPLEMENTATIONS = ["c", "python"]
PAGE = mmap.PAGESIZE


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return implementation(request.param)


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """Registers rings and doorbells to close at teardown, so a failing test leaks no fd."""
    objects: list[Any] = []

    def register(obj: Any) -> Any:
        objects.append(obj)
        return obj

    yield register
    for obj in reversed(objects):
        obj.close()


def payload(seq: int, length: int) -> bytes:
    return bytes((seq * 7 + i) & 0xFF for i in range(length))


def write(ring: Any, seq: int, length: int = 32, flags: int = 0) -> bool:
    ok: bool = ring.write(payload(seq, length), seq, 1000 + seq, 2, 2, flags, 640, 480, seq % 5)
    return ok


def read_one(ring: Any) -> tuple[Any, bytes]:
    got = ring.peek()
    assert got is not None
    header, view = got
    data = bytes(view)
    view.release()
    ring.release()
    return header, data


def patch_fd(fd: int, offset: int, data: bytes) -> None:
    """Scribbles over a ring's shared memory through a separate mapping, as a buggy or hostile peer would."""
    size = os.fstat(fd).st_size
    with mmap.mmap(fd, size) as m:
        m[offset : offset + len(data)] = data


def test_wrap_around_keeps_headers_and_payloads(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    """Every descriptor word comes back as written; kind and fmt are not interpreted (framepool.ipc.slots
    gives them meaning), so codes no slot kind uses travel too."""
    ring = closing(impl.FrameRing.create(4, 100, impl.POLICY_BLOCK))
    for seq in range(3 * 4 + 5):
        length = 1 + seq * 5 % 100
        assert ring.write(payload(seq, length), seq, -seq, 70 + seq, 90 + seq, 0, 48000, 2, seq)
        header, data = read_one(ring)
        assert data == payload(seq, length)
        assert (header.seq, header.ts_us, header.kind, header.fmt, header.flags) == (
            seq,
            -seq,
            70 + seq,
            90 + seq,
            0,
        )
        assert (header.a, header.b, header.c, header.length) == (48000, 2, seq, length)
    assert ring.stats() == {"written": 17, "dropped": 0, "skipped": 0, "read": 17}


def test_interleaved_fill_and_drain_across_the_wrap(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(3, 64, impl.POLICY_BLOCK))
    next_write = next_read = 0
    for burst in [3, 1, 2, 3, 2, 1, 3]:
        for _ in range(burst):
            if write(ring, next_write, 1 + next_write % 64):
                next_write += 1
        while ring.pending() > 1:
            header, data = read_one(ring)
            assert header.seq == next_read and data == payload(next_read, 1 + next_read % 64)
            next_read += 1
    assert next_write - next_read == ring.pending() == 1


def test_empty_and_full(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(2, 16, impl.POLICY_BLOCK))
    assert (ring.slot_count, ring.slot_size, ring.policy) == (2, 16, impl.POLICY_BLOCK)
    assert ring.peek() is None
    assert (ring.pending(), ring.free_slots()) == (0, 2)
    assert write(ring, 0, 16) and write(ring, 1, 0)
    assert (ring.pending(), ring.free_slots()) == (2, 0)
    assert not write(ring, 2, 16)
    header, data = read_one(ring)
    assert header.seq == 0
    header, data = read_one(ring)
    assert (header.seq, header.length, data) == (1, 0, b"")
    assert ring.peek() is None


def test_oversize_frame_is_refused_with_a_clear_message(
    impl: ModuleType, closing: Callable[[Any], Any]
) -> None:
    ring = closing(impl.FrameRing.create(2, 16, impl.POLICY_BLOCK))
    with pytest.raises(impl.RingError, match=r"^frame of 17 bytes exceeds the ring's slot size 16$"):
        ring.write(b"x" * 17, 0, 0, 1, 1, 0, 0, 0, 0)
    assert ring.pending() == 0 and ring.stats()["written"] == 0


def test_write_accepts_numpy_frames(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(2, 4 * 6 * 3, impl.POLICY_BLOCK))
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(6, 4, 3)
    assert ring.write(frame, 9, 0, 2, 3, 0, 4, 6, 0)
    header, view = ring.peek()
    image = np.frombuffer(view, dtype=np.uint8).reshape(header.b, header.a, 3)
    assert np.array_equal(image, frame)
    del image
    view.release()
    ring.release()


def sealed_memfd(name: str, size: int) -> int:
    """A memfd sealed the way the rings seal theirs, for foreign contents."""
    fd = os.memfd_create(name, os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return fd


# Each header check on its own: the field is patched and the checksum recomputed, so only that check can
# refuse the ring (and the test fails if that one check is deleted). Header layout in framepool.ipc.pyring.
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("<I@8", 7, r"version 7, this build speaks 2"),
        ("<I@12", 0, r"geometry 0 x 4096"),
        ("<I@12", (1 << 16) + 1, r"geometry 65537 x 4096"),
        ("<Q@16", 0, r"geometry 4 x 0"),
        ("<Q@16", (1 << 31) + 1, r"geometry 4 x 2147483649"),
        ("<I@24", 3, r"unknown policy 3"),
        ("<I@12", 5, r"5 slots of 4096 bytes need more than"),
        ("<Q@16", 8192, r"4 slots of 8192 bytes need more than"),
    ],
    ids=[
        "version",
        "no-slots",
        "too-many-slots",
        "empty-slots",
        "huge-slots",
        "policy",
        "count-vs-size",
        "size",
    ],
)
def test_each_header_check_refuses_on_attach(
    impl: ModuleType, closing: Callable[[Any], Any], field: str, value: int, message: str
) -> None:
    ring = closing(impl.FrameRing.create(4, 4096, impl.POLICY_BLOCK))
    layout, offset = field.split("@")
    size = os.fstat(ring.fd).st_size
    with mmap.mmap(ring.fd, size) as m:
        struct.pack_into(layout, m, int(offset), value)
        struct.pack_into("<I", m, 28, pyring.header_checksum(bytes(m[:28])))
    fd = os.dup(ring.fd)
    try:
        with pytest.raises(impl.RingError, match=r"^corrupt ring header: .*" + message):
            impl.FrameRing.attach(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, b"\x00", r"bad magic"),
        (28, b"\x00\x00", r"checksum mismatch"),
        (12, b"\x09", r"checksum mismatch"),
    ],
    ids=["magic", "checksum", "field-without-checksum"],
)
def test_magic_and_checksum_refuse_on_attach(
    impl: ModuleType, closing: Callable[[Any], Any], offset: int, value: bytes, message: str
) -> None:
    ring = closing(impl.FrameRing.create(4, 4096, impl.POLICY_BLOCK))
    patch_fd(ring.fd, offset, value)
    fd = os.dup(ring.fd)
    try:
        with pytest.raises(impl.RingError, match=r"^corrupt ring header: " + message):
            impl.FrameRing.attach(fd)
    finally:
        os.close(fd)


def test_attach_refuses_bad_fds(impl: ModuleType) -> None:
    with pytest.raises(impl.RingError):
        impl.FrameRing.attach(-1)
    fd = sealed_memfd("not-a-ring", 0)
    try:
        with pytest.raises(impl.RingError, match=r"^corrupt ring header"):
            impl.FrameRing.attach(fd)
    finally:
        os.close(fd)
    fd = sealed_memfd("not-a-ring", 3 * PAGE)
    try:
        with pytest.raises(impl.RingError, match=r"^corrupt ring header: bad magic"):
            impl.FrameRing.attach(fd)
    finally:
        os.close(fd)


def test_rings_and_doorbells_are_sealed_against_resizing(
    impl: ModuleType, closing: Callable[[Any], Any]
) -> None:
    """A worker holds these fds: if it could shrink one, the supervisor's next access would be a SIGBUS."""
    ring = closing(impl.FrameRing.create(4, 4096, impl.POLICY_BLOCK))
    bell = closing(impl.Doorbell.create())
    for fd in (ring.fd, bell.page_fd):
        size = os.fstat(fd).st_size
        for new_size in (0, size // 2, size * 2):
            with pytest.raises(PermissionError):
                os.ftruncate(fd, new_size)
        with pytest.raises(PermissionError):  # the seals cannot be lifted or changed either
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
        assert os.fstat(fd).st_size == size
    assert write(ring, 1)  # and the ring still works
    assert ring.peek() is not None


def test_attach_refuses_an_unsealed_memfd(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(4, 4096, impl.POLICY_BLOCK))
    size = os.fstat(ring.fd).st_size
    copy = os.memfd_create("unsealed-copy")  # a perfect ring header, but resizable
    try:
        os.ftruncate(copy, size)
        with mmap.mmap(ring.fd, size) as src, mmap.mmap(copy, size) as dst:
            dst[:PAGE] = src[:PAGE]
        with pytest.raises(impl.RingError, match=r"ring fd \d+ is not sealed against resizing"):
            impl.FrameRing.attach(copy)
        bell = closing(impl.Doorbell.create())
        with pytest.raises(impl.RingError, match=r"doorbell page fd \d+ is not sealed"):
            impl.Doorbell.attach(bell.event_fd, copy)
    finally:
        os.close(copy)


def test_create_refuses_bad_geometry(impl: ModuleType) -> None:
    for args in [(0, 16, 0), (4, 0, 0), (4, 16, 7)]:
        with pytest.raises(impl.RingError):
            impl.FrameRing.create(*args)


def test_corrupt_descriptor_is_detected_on_peek(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(4, 64, impl.POLICY_BLOCK))
    assert write(ring, 0)
    patch_fd(ring.fd, PAGE + 40, struct.pack("<Q", 65))
    with pytest.raises(impl.RingError, match=r"^corrupt ring: slot 0 descriptor claims 65 bytes"):
        ring.peek()


def test_inconsistent_indices_are_detected_on_peek(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(4, 64, impl.POLICY_BLOCK))
    patch_fd(ring.fd, 64, struct.pack("<Q", 9))  # head 9 slots ahead of tail 0 in a 4-slot ring
    with pytest.raises(impl.RingError, match=r"^corrupt ring: head 9 and tail 0"):
        ring.peek()


def test_block_policy_refuses_and_loses_nothing(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(3, 64, impl.POLICY_BLOCK))
    seqs_written = [seq for seq in range(10) if write(ring, seq)]
    assert seqs_written == [0, 1, 2]
    assert ring.stats()["dropped"] == 0
    received = [read_one(ring)[0].seq for _ in range(2)]
    assert write(ring, 3) and write(ring, 4) and not write(ring, 5)
    while ring.pending():
        received.append(read_one(ring)[0].seq)
    assert received == [0, 1, 2, 3, 4]
    assert ring.stats() == {"written": 5, "dropped": 0, "skipped": 0, "read": 5}


def test_drop_newest_counts_drops_and_flags_the_gap(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(2, 64, impl.POLICY_DROP_NEWEST))
    results = [write(ring, seq) for seq in range(5)]
    assert results == [True, True, False, False, False]
    assert ring.stats()["dropped"] == 3
    first, _ = read_one(ring)
    assert (first.seq, first.flags) == (0, 0)
    assert write(ring, 5, flags=impl.FLAG_EOS)
    assert write(ring, 6) is False  # full again: dropped, and the gap stays pending
    headers = [read_one(ring)[0] for _ in range(2)]
    assert [(h.seq, h.flags) for h in headers] == [(1, 0), (5, impl.FLAG_GAP | impl.FLAG_EOS)]
    assert write(ring, 7) and write(ring, 8)
    headers = [read_one(ring)[0] for _ in range(2)]
    assert [(h.seq, h.flags) for h in headers] == [(7, impl.FLAG_GAP), (8, 0)]
    assert ring.stats() == {"written": 5, "dropped": 4, "skipped": 0, "read": 5}


def test_latest_skips_to_the_newest_frame(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(4, 64, impl.POLICY_LATEST))
    assert [write(ring, seq) for seq in range(5)] == [True] * 4 + [False]
    header, data = read_one(ring)
    assert (header.seq, data) == (3, payload(3, 32))
    assert ring.stats() == {"written": 4, "dropped": 1, "skipped": 3, "read": 1}
    assert ring.peek() is None
    assert write(ring, 10)
    assert read_one(ring)[0].seq == 10
    assert ring.stats()["skipped"] == 3


def test_peek_twice_returns_the_same_frame(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(4, 64, impl.POLICY_LATEST))
    assert write(ring, 0)
    first = ring.peek()
    assert write(ring, 1)
    second = ring.peek()
    assert first is not None and second is not None
    assert first[0].seq == second[0].seq == 0
    del first, second
    ring.release()
    assert read_one(ring)[0].seq == 1
    with pytest.raises(impl.RingError, match="without a peeked frame"):
        ring.release()


@pytest.mark.parametrize(("producer", "consumer"), [("c", "python"), ("python", "c")])
def test_cross_implementation_interop(producer: str, consumer: str, closing: Callable[[Any], Any]) -> None:
    prod, cons = implementation(producer), implementation(consumer)
    out_ring = closing(prod.FrameRing.create(3, 300, prod.POLICY_DROP_NEWEST))
    in_ring = closing(cons.FrameRing.attach(os.dup(out_ring.fd)))
    assert (in_ring.slot_count, in_ring.slot_size, in_ring.policy) == (3, 300, cons.POLICY_DROP_NEWEST)
    bell_out = closing(prod.Doorbell.create())
    bell_in = closing(cons.Doorbell.attach(os.dup(bell_out.event_fd), os.dup(bell_out.page_fd)))
    out_ring.bind(bell_out, None)
    expected = []
    for seq in range(11):
        if write(out_ring, seq, 1 + seq * 29 % 300):
            expected.append(seq)
        if seq % 4 == 3:
            bell_in.prepare_sleep()
            while in_ring.pending():
                header, data = read_one(in_ring)
                assert header.seq == expected.pop(0) and data == payload(header.seq, header.length)
    assert in_ring.stats() == out_ring.stats()
    assert in_ring.stats()["dropped"] > 0


def test_doorbell_rings_only_a_sleeper(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    bell = closing(impl.Doorbell.create())
    assert bell.fileno() == bell.event_fd
    assert bell.ring() is False
    assert bell.wait(0.01) is False  # nothing rung: times out
    bell.prepare_sleep()
    assert bell.ring() is True
    assert bell.ring() is False  # the first ring consumed the sleeping flag
    assert bell.wait(EVENT) is True
    assert bell.wait(0) is False  # wait() cleared the eventfd counter
    bell.prepare_sleep()
    bell.cancel_sleep()
    assert bell.ring() is False


def test_doorbell_attach_refuses_a_foreign_page(impl: ModuleType) -> None:
    page_fd = sealed_memfd("not-a-doorbell", PAGE)
    event_fd = os.eventfd(0)
    try:
        with pytest.raises(impl.RingError, match=r"^corrupt doorbell"):
            impl.Doorbell.attach(event_fd, page_fd)
        with pytest.raises(impl.RingError):
            impl.Doorbell.attach(-1, page_fd)
    finally:
        os.close(page_fd)
        os.close(event_fd)


def test_no_lost_wakeup_in_a_tight_loop(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    frames = 2000 if impl is pyring else 20000
    ring = closing(impl.FrameRing.create(8, 16, impl.POLICY_BLOCK))
    data_bell, space_bell = closing(impl.Doorbell.create()), closing(impl.Doorbell.create())
    ring.bind(data_bell, space_bell)
    timeouts: list[str] = []

    def produce() -> None:
        seq = 0
        while seq < frames:
            if ring.write(seq.to_bytes(8, "little"), seq, 0, 3, 5, 0, 0, 0, 0):
                seq += 1
                continue
            space_bell.prepare_sleep()
            # Re-check by writing, as the daemon does: a refused write re-arms the flag that makes release()
            # ring; free_slots() would miss a release that began before this stall and consumed the flag.
            if ring.write(seq.to_bytes(8, "little"), seq, 0, 3, 5, 0, 0, 0, 0):
                space_bell.cancel_sleep()
                seq += 1
            elif not space_bell.wait(EVENT):
                timeouts.append(f"producer at {seq}")
                return

    producer = threading.Thread(target=produce)
    producer.start()
    received = 0
    while received < frames and not timeouts:
        got = ring.peek()
        if got is not None:
            assert got[0].seq == received and bytes(got[1]) == received.to_bytes(8, "little")
            ring.release()
            received += 1
            continue
        data_bell.prepare_sleep()
        if ring.pending() == 0 and not data_bell.wait(EVENT):
            timeouts.append(f"consumer at {received}")
        data_bell.cancel_sleep()
    producer.join()
    assert timeouts == []
    assert ring.stats()["read"] == frames


async def test_doorbell_wakes_an_asyncio_reader(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(2, 64, impl.POLICY_DROP_NEWEST))
    bell = closing(impl.Doorbell.create())
    ring.bind(bell, None)
    rung = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(bell.fileno(), rung.set)
    try:
        bell.prepare_sleep()
        await loop.run_in_executor(None, write, ring, 1)
        await asyncio.wait_for(rung.wait(), EVENT)
        bell.clear()
        assert bell.ring() is False and bell.wait(0) is False
        assert read_one(ring)[0].seq == 1
    finally:
        loop.remove_reader(bell.fileno())


def test_use_after_close_raises(impl: ModuleType) -> None:
    ring = impl.FrameRing.create(2, 16, impl.POLICY_BLOCK)
    bell = impl.Doorbell.create()
    ring.close()
    ring.close()  # idempotent
    bell.close()
    calls: list[Callable[[], object]] = [
        lambda: write(ring, 0),
        ring.peek,
        ring.release,
        ring.pending,
        ring.free_slots,
        ring.stats,
        lambda: ring.bind(None, None),
    ]
    for call in calls:
        with pytest.raises(impl.RingError, match=r"^ring is closed$"):
            call()
    for bell_call in [bell.ring, bell.prepare_sleep, bell.cancel_sleep, bell.clear, lambda: bell.wait(0)]:
        with pytest.raises(impl.RingError, match=r"^doorbell is closed$"):
            bell_call()


def test_close_refuses_while_a_frame_view_is_exported(impl: ModuleType) -> None:
    ring = impl.FrameRing.create(2, 16, impl.POLICY_BLOCK)
    assert write(ring, 0, 16)
    _, view = ring.peek()
    with pytest.raises(impl.RingError, match="views are exported"):
        ring.close()
    assert bytes(view) == payload(0, 16)  # still mapped and readable
    ring.release()
    with pytest.raises(impl.RingError, match="views are exported"):
        ring.close()  # a view that outlives release() still pins the mapping
    image = np.frombuffer(view, dtype=np.uint8)
    del view
    with pytest.raises(impl.RingError, match="views are exported"):
        ring.close()  # so does an array built on it
    del image
    ring.close()
    with pytest.raises(impl.RingError, match=r"^ring is closed$"):
        ring.peek()


def test_frame_header_is_read_only(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(2, 64, impl.POLICY_BLOCK))
    assert write(ring, 0)
    header, _ = read_one(ring)
    with pytest.raises(AttributeError):
        header.seq = 5


def test_write_checks_its_arguments(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(2, 16, impl.POLICY_BLOCK))
    with pytest.raises(TypeError):
        ring.write(b"x", 0, 0, 1, 1, 0, 0, 0)  # one argument short
    with pytest.raises(TypeError):
        ring.write("not bytes", 0, 0, 1, 1, 0, 0, 0, 0)
    assert ring.pending() == 0


def slot_address(view: memoryview) -> int:
    address: int = np.frombuffer(view, np.uint8).__array_interface__["data"][0]
    return address


def test_a_consumer_that_keeps_up_gets_the_same_slot_back(
    impl: ModuleType, closing: Callable[[Any], Any]
) -> None:
    ring = closing(impl.FrameRing.create(4, 64, impl.POLICY_BLOCK))
    addresses = []
    for seq in range(6):  # written into an empty ring each time: the slot written last is rewritten
        assert write(ring, seq)
        got = ring.peek()
        assert got is not None and bytes(got[1]) == payload(seq, 32)
        addresses.append(slot_address(got[1]))
        del got
        ring.release()
    assert len(set(addresses)) == 1
    backlog = []
    for seq in range(6, 10):  # the first into the empty ring rewrites that slot, the backlog takes the others
        assert write(ring, seq)
    while (got := ring.peek()) is not None:
        backlog.append((got[0].seq, slot_address(got[1]), bytes(got[1])))
        del got
        ring.release()
    assert [seq for seq, _, _ in backlog] == [6, 7, 8, 9]
    assert [data for _, _, data in backlog] == [payload(seq, 32) for seq in range(6, 10)]
    assert backlog[0][1] == addresses[0] and len({address for _, address, _ in backlog}) == 4


def test_a_peeked_frame_is_never_overwritten(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(3, 64, impl.POLICY_LATEST))
    assert write(ring, 0)
    held = ring.peek()  # not released: its slot stays taken although the ring is otherwise empty
    assert held is not None
    assert write(ring, 1) and write(ring, 2) and not write(ring, 3)
    assert bytes(held[1]) == payload(0, 32)
    del held
    ring.release()
    header, data = read_one(ring)
    assert (header.seq, data) == (2, payload(2, 32))


def test_corrupt_payload_slot_is_detected_on_peek(impl: ModuleType, closing: Callable[[Any], Any]) -> None:
    ring = closing(impl.FrameRing.create(4, 64, impl.POLICY_BLOCK))
    assert write(ring, 0)
    patch_fd(ring.fd, PAGE + 48, struct.pack("<I", 4))
    with pytest.raises(impl.RingError, match=r"^corrupt ring: slot 0 descriptor names payload slot 4 of 4"):
        ring.peek()


@pytest.mark.parametrize("policy", ["POLICY_BLOCK", "POLICY_DROP_NEWEST", "POLICY_LATEST"])
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@settings(max_examples=60, deadline=None)
@given(bursts=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=30))
def test_any_interleaving_delivers_what_the_policy_promises(
    name: str, policy: str, bursts: list[tuple[int, int]]
) -> None:
    """Bursts of writes then reads against a model of the policy: every frame read is intact and expected."""
    impl = implementation(name)
    ring = impl.FrameRing.create(3, 64, getattr(impl, policy))
    try:
        model: list[int] = []
        seq = 0
        for writes, reads in bursts:
            for _ in range(writes):
                assert write(ring, seq, 1 + seq % 64) == (len(model) < 3)
                if len(model) < 3:
                    model.append(seq)
                seq += 1
            for _ in range(reads):
                if not model:
                    assert ring.peek() is None
                    continue
                header, data = read_one(ring)
                expected = model.pop() if policy == "POLICY_LATEST" else model.pop(0)
                if policy == "POLICY_LATEST":
                    model.clear()
                assert (header.seq, data) == (expected, payload(expected, 1 + expected % 64))
    finally:
        ring.close()


@pytest.mark.parametrize(("tail", "expected"), [(4, 1), (100, 0), (0, 4)], ids=["honest", "ahead", "behind"])
def test_pending_is_clamped_whatever_the_peer_writes(
    impl: ModuleType, closing: Callable[[Any], Any], tail: int, expected: int
) -> None:
    """`pending` counts frames written and not released: the supervisor adds it to a stream's lost frames
    when a worker dies, so a tail the worker scribbled (past the head, or further back than the ring holds)
    must give a number between 0 and the ring's slots, never a negative or a huge one."""
    ring = closing(impl.FrameRing.create(4, 64, impl.POLICY_BLOCK))
    for seq in range(1, 3):
        write(ring, seq, 8)
        read_one(ring)
    for seq in range(3, 6):
        write(ring, seq, 8)  # head 5, tail 2: three pending
    assert ring.pending() == 3
    patch_fd(ring.fd, 128, struct.pack("<Q", tail))  # the consumer's tail (offset 128, see native/ring.c)
    assert ring.pending() == expected
