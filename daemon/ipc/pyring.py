"""Pure-Python reference implementation of the shared-memory frame ring (both processes).

This module is the executable specification of `framepool._ring`: same API, same memory layout, byte for
byte, so a C producer can feed a Python consumer and the other way round (the unit tests run every case
against both and cross them). It is slow (every field goes through `struct`), and it is meant to be exact,
not fast; production code uses the C extension through `framepool.ipc.ring`.

Memory layout of a ring (a memfd; all integers little-endian, indices count frames, never wrap):

    control page   0  magic u64 | 8 version u32 | 12 slot_count u32 | 16 slot_size u64 | 24 policy u32
                  28  header checksum u32 (FNV-1a over bytes 0..27)
                  64  head: producer index (own cache line)
                 128  tail: consumer index (own cache line)
                 192  producer-owned line: written u64, dropped u64, gap_pending u64, last_slot u64
                 256  consumer-owned line: skipped u64, read u64
                 320  producer_waiting_for_space u32 (set by the producer, exchanged by the consumer)
    descriptors   PAGE + 64*(index % slot_count): seq u64, ts_us i64, kind u32, fmt u32, flags u32, a u32,
                  b u32, c u32, length u64, slot u32 (the payload slot holding the frame); the ring sets
                  FLAG_GAP and otherwise moves them uninterpreted (their meaning: framepool.ipc.slots)
    payload       page-aligned; slot i at payload_offset + i * round_up(slot_size, PAGE)

Payload slots: the producer rewrites `last_slot` (the slot of the newest frame) when the consumer has
released everything, so a consumer that keeps up leaves one slot's memory hot in cache instead of the
producer cycling through all of them; otherwise it takes `last_slot + 1`: pending frames occupy
consecutive slots ending at `last_slot` (the run restarts only when nothing is pending), so that slot is
free whenever the ring is not full.

Doorbell page (its own memfd): magic u64 at 0, sleeping u32 at 64.

Memory ordering in Python: an aligned 8-byte store through a memoryview cast is a single `mov` on x86-64,
whose TSO model already gives loads acquire and stores release semantics; the one reordering x86 allows,
a store followed by a load of another location, is closed where Dekker's protocol needs it by a full
fence. Pure Python has no fence instruction, so `_full_fence` takes and drops a `threading.Lock`, whose
uncontended acquire is a lock-prefixed atomic (a full barrier). The C extension uses <stdatomic.h>.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import select
import struct
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

try:  # One exception class for both implementations, so `except RingError` never depends on which runs.
    from framepool._ring import RingError
except ImportError:  # pragma: no cover - only without a built extension

    class RingError(Exception):  # type: ignore[no-redef]
        """Every frame ring failure: oversize frame, corrupt or mismatched header, bad fd, closed ring."""


FLAG_GAP = 1
FLAG_EOS = 2
POLICY_BLOCK = 0
POLICY_DROP_NEWEST = 1
POLICY_LATEST = 2

PAGE = mmap.PAGESIZE
RING_MAGIC = 0x31474E4952504646  # b"FFPRING1" little-endian
BELL_MAGIC = 0x314C4C4542504646  # b"FFPBELL1"
VERSION = 2
MAX_SLOT_COUNT = 1 << 16
MAX_SLOT_SIZE = 1 << 31

# Byte offsets in the control page.
_HEADER = struct.Struct("<QIIQI")  # magic, version, slot_count, slot_size, policy: 28 bytes
_CHECKSUM_OFF = 28
_HEAD = 64
_TAIL = 128
_WRITTEN = 192
_DROPPED = 200
_GAP_PENDING = 208
_LAST_SLOT = 216
_SKIPPED = 256
_READ = 264
_WAITING = 320
_SLEEPING = 64  # in the doorbell page

_DESC_SIZE = 64
_DESC = struct.Struct("<QqIIIIIIQI")  # seq, ts_us, kind, fmt, flags, a, b, c, length, slot


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def header_checksum(header: bytes) -> int:
    """FNV-1a (32 bit) of the 28 header bytes; catches a torn or foreign control page."""
    h = 0x811C9DC5
    for byte in header:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def ring_geometry(slot_count: int, slot_size: int) -> tuple[int, int, int]:
    """(payload offset, slot stride, total mapping size) of a ring, shared by create and attach."""
    payload_off = _round_up(PAGE + slot_count * _DESC_SIZE, PAGE)
    stride = _round_up(slot_size, PAGE)
    return payload_off, stride, payload_off + slot_count * stride


_fence_lock = threading.Lock()


def _full_fence() -> None:
    with _fence_lock:
        pass


def _map_fd(fd: int, size: int, what: str) -> mmap.mmap:
    try:
        return mmap.mmap(fd, size, mmap.MAP_SHARED | mmap.MAP_POPULATE, mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError, OverflowError) as exc:
        raise RingError(f"cannot map {what} fd {fd}: {exc}") from None


# Every shared memfd is sealed right after it is sized, as in ring.c: a worker that could shrink it would
# kill the supervisor with SIGBUS; one that could grow it could make the supervisor map memory it never meant
# to. F_SEAL_SEAL keeps the seals from being lifted; writes stay allowed.
REQUIRED_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


def _sealed_memfd(name: str, size: int) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, REQUIRED_SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sealed_size(fd: int, what: str) -> int:
    """The size of a shared memfd, which must be sealed against resizing; RingError otherwise."""
    try:
        size, seals = os.fstat(fd).st_size, fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except (OSError, OverflowError, TypeError) as exc:
        raise RingError(f"bad {what} fd {fd!r}: {exc}") from None
    if seals & REQUIRED_SEALS != REQUIRED_SEALS:
        raise RingError(f"{what} fd {fd} is not sealed against resizing (seals {seals:#x})")
    return size


class Doorbell:
    """An eventfd plus a shared 'sleeping' flag: the producer pays a syscall only when the consumer sleeps.

    Dekker: the consumer stores sleeping=1, fences, then re-checks its rings before blocking; the producer
    publishes its head, fences, then exchanges sleeping with 0 and writes the eventfd if it was 1. One of
    the two always sees the other's store, so a wake-up is never lost.
    """

    def __init__(self, event_fd: int, page_fd: int, page: mmap.mmap) -> None:
        self.event_fd = event_fd
        self.page_fd = page_fd
        self._page: mmap.mmap | None = page
        self._words: memoryview | None = memoryview(page).cast("I")

    @staticmethod
    def create() -> Doorbell:
        event_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            page_fd = _sealed_memfd("framepool-doorbell", PAGE)
        except BaseException:
            os.close(event_fd)
            raise
        try:
            page = _map_fd(page_fd, PAGE, "doorbell")
        except BaseException:
            os.close(event_fd)
            os.close(page_fd)
            raise
        struct.pack_into("<Q", page, 0, BELL_MAGIC)
        return Doorbell(event_fd, page_fd, page)

    @staticmethod
    def attach(event_fd: int, page_fd: int) -> Doorbell:
        try:
            os.fstat(event_fd)
        except (OSError, OverflowError, TypeError) as exc:
            raise RingError(f"bad doorbell event fd {event_fd!r}: {exc}") from None
        if _sealed_size(page_fd, "doorbell page") < PAGE:
            raise RingError(f"corrupt doorbell: page fd {page_fd} is smaller than one page")
        page = _map_fd(page_fd, PAGE, "doorbell page")
        os.set_blocking(event_fd, False)  # clear() must never block on an empty counter
        (magic,) = struct.unpack_from("<Q", page, 0)
        if magic != BELL_MAGIC:
            page.close()
            raise RingError(f"corrupt doorbell: bad magic {magic:#x}")
        return Doorbell(event_fd, page_fd, page)

    def _flag(self) -> memoryview:
        if self._words is None:
            raise RingError("doorbell is closed")
        return self._words

    def fileno(self) -> int:
        self._flag()
        return self.event_fd

    def ring(self) -> bool:
        words = self._flag()
        _full_fence()
        if words[_SLEEPING // 4] != 1:
            return False
        # Not an atomic exchange: a consumer's new sleeping=1 may be overwritten here, but the eventfd
        # write below always follows, so the worst case is one spurious wake-up, never a lost one.
        words[_SLEEPING // 4] = 0
        os.eventfd_write(self.event_fd, 1)
        return True

    def _wake(self) -> None:
        """ring() on behalf of a bound ring: a doorbell closed meanwhile is skipped, not an error."""
        if self._words is not None:
            self.ring()

    def prepare_sleep(self) -> None:
        self._flag()[_SLEEPING // 4] = 1
        _full_fence()

    def cancel_sleep(self) -> None:
        self._flag()[_SLEEPING // 4] = 0

    def wait(self, timeout: float | None) -> bool:
        words = self._flag()
        poller = select.poll()
        poller.register(self.event_fd, select.POLLIN)
        rung = bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))
        self._drain()
        words[_SLEEPING // 4] = 0
        return rung

    def clear(self) -> None:
        words = self._flag()
        self._drain()
        words[_SLEEPING // 4] = 0

    def _drain(self) -> None:
        try:
            os.eventfd_read(self.event_fd)
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self._page is None:
            return
        assert self._words is not None
        self._words.release()
        self._page.close()
        self._page = self._words = None
        os.close(self.event_fd)
        os.close(self.page_fd)


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The raw descriptor of one slot; `framepool.ipc.slots` says what kind, fmt, a, b and c mean."""

    seq: int
    ts_us: int
    kind: int
    fmt: int
    flags: int
    a: int
    b: int
    c: int
    length: int


class FrameRing:
    """A single-producer single-consumer ring of fixed-size frame slots in a memfd (see module docstring)."""

    def __init__(self, fd: int, mapping: mmap.mmap, slot_count: int, slot_size: int, policy: int) -> None:
        self.fd = fd
        self.slot_count = slot_count
        self.slot_size = slot_size
        self.policy = policy
        self._payload_off, self._stride, _ = ring_geometry(slot_count, slot_size)
        self._map: mmap.mmap | None = mapping
        self._open_views()
        self._data_bell: Doorbell | None = None
        self._space_bell: Doorbell | None = None
        self._peeked: FrameHeader | None = None
        self._peeked_index = 0
        self._peeked_slot = 0

    def _open_views(self) -> None:
        assert self._map is not None
        self._base = memoryview(self._map)
        self._q = self._base[:PAGE].cast("Q")
        self._u32 = self._base[:PAGE].cast("I")

    @staticmethod
    def create(slot_count: int, slot_size: int, policy: int) -> FrameRing:
        if not 1 <= slot_count <= MAX_SLOT_COUNT:
            raise RingError(f"slot_count must be between 1 and {MAX_SLOT_COUNT}, got {slot_count}")
        if not 1 <= slot_size <= MAX_SLOT_SIZE:
            raise RingError(f"slot_size must be between 1 and {MAX_SLOT_SIZE}, got {slot_size}")
        if policy not in (POLICY_BLOCK, POLICY_DROP_NEWEST, POLICY_LATEST):
            raise RingError(f"unknown ring policy {policy}")
        total = ring_geometry(slot_count, slot_size)[2]
        fd = _sealed_memfd("framepool-ring", total)
        try:
            mapping = _map_fd(fd, total, "ring")
        except BaseException:
            os.close(fd)
            raise
        for offset in range(0, total, PAGE):  # pre-fault: no page fault may land on the hot path
            mapping[offset] = 0
        header = _HEADER.pack(RING_MAGIC, VERSION, slot_count, slot_size, policy)
        mapping[: _HEADER.size] = header
        struct.pack_into("<I", mapping, _CHECKSUM_OFF, header_checksum(header))
        return FrameRing(fd, mapping, slot_count, slot_size, policy)

    @staticmethod
    def attach(fd: int) -> FrameRing:
        size = _sealed_size(fd, "ring")
        if size < PAGE:
            raise RingError(f"corrupt ring header: fd {fd} holds {size} bytes, less than a control page")
        mapping = _map_fd(fd, size, "ring")
        try:
            slot_count, slot_size, policy = _validate_header(mapping, size)
        except RingError:
            mapping.close()
            raise
        return FrameRing(fd, mapping, slot_count, slot_size, policy)

    def _live(self) -> memoryview:
        if self._map is None:
            raise RingError("ring is closed")
        return self._q

    def bind(self, data_bell: Doorbell | None, space_bell: Doorbell | None) -> None:
        self._live()
        self._data_bell = data_bell
        self._space_bell = space_bell

    # -- producer ------------------------------------------------------------------------------------

    def write(
        self, data: Buffer, seq: int, ts_us: int, kind: int, fmt: int, flags: int, a: int, b: int, c: int, /
    ) -> bool:
        q = self._live()
        view = memoryview(data)
        length = view.nbytes
        if length > self.slot_size:
            raise RingError(f"frame of {length} bytes exceeds the ring's slot size {self.slot_size}")
        head = q[_HEAD // 8]
        tail = q[_TAIL // 8]
        if head - tail >= self.slot_count and not self._room_after_full(q, head):
            return False
        if q[_GAP_PENDING // 8]:
            flags |= FLAG_GAP
            q[_GAP_PENDING // 8] = 0
        last = q[_LAST_SLOT // 8] % self.slot_count
        slot = last if head == tail else (last + 1) % self.slot_count  # a stale tail only says "not empty"
        offset = self._payload_off + slot * self._stride
        self._base[offset : offset + length] = (
            view.cast("B") if view.ndim != 1 or view.format != "B" else view
        )
        index = head % self.slot_count
        _DESC.pack_into(
            self._base, PAGE + index * _DESC_SIZE, seq, ts_us, kind, fmt, flags, a, b, c, length, slot
        )
        q[_LAST_SLOT // 8] = slot
        q[_WRITTEN // 8] += 1
        q[_HEAD // 8] = head + 1  # publish (a release store under x86 TSO)
        if self._data_bell is not None:
            self._data_bell._wake()
        return True

    def _room_after_full(self, q: memoryview, head: int) -> bool:
        """The ring looked full: apply the policy; True if space appeared meanwhile (BLOCK only)."""
        if self.policy == POLICY_BLOCK:
            self._u32[_WAITING // 4] = 1
            _full_fence()  # Dekker with release(): either it sees our flag or we see its tail
            if head - q[_TAIL // 8] < self.slot_count:
                self._u32[_WAITING // 4] = 0
                return True
            return False
        q[_DROPPED // 8] += 1
        if self.policy == POLICY_DROP_NEWEST:
            q[_GAP_PENDING // 8] = 1
        return False

    def free_slots(self) -> int:
        q = self._live()
        return self.slot_count - (q[_HEAD // 8] - q[_TAIL // 8])

    # -- consumer ------------------------------------------------------------------------------------

    def peek(self) -> tuple[FrameHeader, memoryview] | None:
        q = self._live()
        if self._peeked is not None:  # the same frame until release(), even if newer ones arrived
            return self._peeked, self._slot_view(self._peeked_slot, self._peeked.length)
        tail = q[_TAIL // 8]
        head = q[_HEAD // 8]
        if head < tail or head - tail > self.slot_count:
            raise RingError(
                f"corrupt ring: head {head} and tail {tail} are inconsistent for {self.slot_count} slots"
            )
        if head == tail:
            return None
        if self.policy == POLICY_LATEST and head - tail > 1:
            q[_SKIPPED // 8] += head - 1 - tail
            tail = head - 1
            q[_TAIL // 8] = tail
        index = tail % self.slot_count
        seq, ts_us, kind, fmt, flags, a, b, c, length, slot = _DESC.unpack_from(
            self._base, PAGE + index * _DESC_SIZE
        )
        if length > self.slot_size:
            raise RingError(
                f"corrupt ring: slot {index} descriptor claims {length} bytes, "
                f"the slot size is {self.slot_size}"
            )
        if slot >= self.slot_count:
            raise RingError(
                f"corrupt ring: slot {index} descriptor names payload slot {slot} of {self.slot_count}"
            )
        self._peeked = FrameHeader(seq, ts_us, kind, fmt, flags, a, b, c, length)
        self._peeked_index = tail
        self._peeked_slot = slot
        return self._peeked, self._slot_view(slot, length)

    def _slot_view(self, slot: int, length: int) -> memoryview:
        offset = self._payload_off + slot * self._stride
        return self._base[offset : offset + length]

    def release(self) -> None:
        q = self._live()
        if self._peeked is None:
            raise RingError("release() without a peeked frame")
        q[_READ // 8] += 1
        q[_TAIL // 8] = self._peeked_index + 1
        self._peeked = None
        _full_fence()  # Dekker with write(): our tail store before the load of the producer's flag
        if self._u32[_WAITING // 4]:
            self._u32[_WAITING // 4] = 0
            if self._space_bell is not None:
                self._space_bell._wake()

    def pending(self) -> int:
        """Frames written and not yet released, clamped to 0..slot_count (the other side may lie)."""
        q = self._live()
        head, tail = q[_HEAD // 8], q[_TAIL // 8]
        return 0 if tail > head else min(head - tail, self.slot_count)

    def stats(self) -> dict[str, int]:
        q = self._live()
        return {
            "written": q[_WRITTEN // 8],
            "dropped": q[_DROPPED // 8],
            "skipped": q[_SKIPPED // 8],
            "read": q[_READ // 8],
        }

    def close(self) -> None:
        if self._map is None:
            return
        self._q.release()
        self._u32.release()
        self._base.release()
        try:
            self._map.close()
        except BufferError:
            self._open_views()
            raise RingError(
                "cannot close the ring while frame views are exported; release them first"
            ) from None
        self._map = None
        self._data_bell = self._space_bell = None
        os.close(self.fd)


def _validate_header(mapping: mmap.mmap, size: int) -> tuple[int, int, int]:
    magic, version, slot_count, slot_size, policy = _HEADER.unpack_from(mapping, 0)
    (checksum,) = struct.unpack_from("<I", mapping, _CHECKSUM_OFF)
    if magic != RING_MAGIC:
        raise RingError(f"corrupt ring header: bad magic {magic:#x}")
    if version != VERSION:
        raise RingError(f"corrupt ring header: version {version}, this build speaks {VERSION}")
    if checksum != header_checksum(bytes(mapping[: _HEADER.size])):
        raise RingError("corrupt ring header: checksum mismatch")
    if not (1 <= slot_count <= MAX_SLOT_COUNT and 1 <= slot_size <= MAX_SLOT_SIZE):
        raise RingError(f"corrupt ring header: geometry {slot_count} x {slot_size}")
    if policy not in (POLICY_BLOCK, POLICY_DROP_NEWEST, POLICY_LATEST):
        raise RingError(f"corrupt ring header: unknown policy {policy}")
    if ring_geometry(slot_count, slot_size)[2] > size:
        raise RingError(
            f"corrupt ring header: {slot_count} slots of {slot_size} bytes need more than {size} bytes"
        )
    return slot_count, slot_size, policy
