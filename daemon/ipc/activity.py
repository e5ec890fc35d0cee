"""A worker's activity page: which processor it is running, on which stream, since when (both processes).

One small memfd per worker, created by the supervisor and passed in the start message. The worker writes
it around every processor call (`ActivityPage.enter` / `leave`); the supervisor maps it read-only and reads
it whenever it wants (`ActivityPage.read`), including after the worker is gone: the mapping outlives the
process. That is how the pool blames a processor for a worker that hung, crashed (os._exit, SIGSEGV in a
native library) or crossed its memory limit, and how it sees a call that overran its hard time limit while
the worker, single-threaded and stuck in that call, cannot say so itself.

Layout (little-endian, 64 bytes used of one page):
    0   u64  seq        odd while the worker writes the call record, even when it is consistent
    8   i64  stream     stream index of the call in flight, -1 when no processor runs
    16  i64  processor  processor index within that stream
    24  f64  started    CLOCK_MONOTONIC seconds (time.monotonic, the same clock in every process)
    32  f64  deadline   CLOCK_MONOTONIC seconds after which the supervisor kills the worker, blames the call
    40  i64  grower_stream, 48 i64 grower_processor, 56 i64 grower_bytes: the processor whose calls grew the
        worker's peak memory most (the suspect when the worker crosses worker_memory_limit_mb while idle)

A seqlock rather than a lock: the writer must never wait for the reader, and a reader that catches a write
in progress simply reads again. Only the call record is guarded; the grower record is written by the same
single thread between calls and read only when deciding whom a memory kill blames.

Alternatives rejected: a control message before and after each call (two syscalls per call per processor,
and a worker stuck in a call could not have sent the one that matters); the ping reply (a hung worker does
not answer; a crashed one never will).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from dataclasses import dataclass

_SEQ = struct.Struct("<Q")
_CALL = struct.Struct("<Qqqdd")
_GROWER = struct.Struct("<qqq")
_GROWER_AT = _CALL.size
SIZE = mmap.PAGESIZE
IDLE = -1


@dataclass(frozen=True, slots=True)
class Call:
    """The processor call a worker was in when the page was read."""

    stream: int
    processor: int
    started: float
    deadline: float


@dataclass(frozen=True, slots=True)
class Grower:
    """The processor whose calls grew the worker's peak memory most, and by how much."""

    stream: int
    processor: int
    bytes: int


class ActivityPage:
    """The page; `create` in the supervisor (read-only mapping), `attach` in the worker (read-write)."""

    def __init__(self, fd: int, mapping: mmap.mmap, writable: bool) -> None:
        self.fd = fd
        self._map: mmap.mmap | None = mapping
        self._writable = writable
        self._seq = 0

    @classmethod
    def create(cls) -> ActivityPage:
        fd = os.memfd_create("framepool-activity", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, SIZE)
            init = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            _CALL.pack_into(init, 0, 0, IDLE, 0, 0.0, 0.0)
            _GROWER.pack_into(init, _GROWER_AT, IDLE, 0, 0)
            init.close()
            # A worker may write the page, never resize it under the supervisor's mapping.
            seals = fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            mapping = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, mapping, writable=False)

    @classmethod
    def attach(cls, fd: int) -> ActivityPage:
        """The worker's side; OSError (ValueError from mmap) if `fd` is not a page-sized memfd."""
        if os.fstat(fd).st_size < SIZE:
            os.close(fd)
            raise OSError(f"activity page fd {fd} is smaller than a page")
        mapping = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        os.close(fd)  # the mapping keeps the memory
        return cls(-1, mapping, writable=True)

    # -- worker ----------------------------------------------------------------------------------------

    def enter(self, stream: int, processor: int, started: float, deadline: float) -> None:
        assert self._map is not None
        self._seq += 1
        _CALL.pack_into(self._map, 0, self._seq, stream, processor, started, deadline)
        self._seq += 1
        _SEQ.pack_into(self._map, 0, self._seq)

    def leave(self) -> None:
        self.enter(IDLE, 0, 0.0, 0.0)

    def grew(self, stream: int, processor: int, total: int) -> None:
        assert self._map is not None
        _GROWER.pack_into(self._map, _GROWER_AT, stream, processor, total)

    # -- supervisor ------------------------------------------------------------------------------------

    def read(self) -> Call | None:
        """The call in flight, None when idle (or after the page was closed)."""
        if self._map is None:
            return None
        for _ in range(100):
            seq, stream, processor, started, deadline = _CALL.unpack_from(self._map, 0)
            (again,) = _SEQ.unpack_from(self._map, 0)
            if seq == again and not seq & 1:
                return None if stream == IDLE else Call(stream, processor, started, deadline)
        return None  # a writer mid-update 100 times in a row: it is alive and working, nothing to blame

    def grower(self) -> Grower | None:
        if self._map is None:
            return None
        stream, processor, size = _GROWER.unpack_from(self._map, _GROWER_AT)
        return None if stream == IDLE else Grower(stream, processor, size)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
