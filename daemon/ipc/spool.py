"""The on-disk spool of one sink: the supervisor appends DataMessages, the bridge process reads, delivers and
checkpoints them (both: `SpoolWriter` runs in the supervisor, `SpoolReader` in the bridge process; the spool
directory is the only thing they share).

Layout of one spool directory (one per sink):

    00000000000000000001.seg   segments: append-only files of records, numbered, never reused
    00000000000000000002.seg
    checkpoint                 JSON {"segment": n, "offset": bytes}: where delivery has reached (bridge)
    writer.lock                flock'd by the one writer

A record is `<u32 length><u32 crc32(length bytes + body)><body>`, little-endian, the body one msgpack
DataMessage. CRC32 is zlib's: CRC32C would need a dependency and buys speed we do not need here (a record
is checked once, by the bridge).

Why these choices:
- The writer appends with one plain `write()` per record from the supervisor's loop: the bytes are in the
  page cache when it returns, so a supervisor killed with SIGKILL loses nothing it appended. A thread
  group-commits with `fdatasync` every `commit_interval` (never the loop); a machine crash loses at most the
  records of the last interval. `append` never blocks on the disk beyond that write and never waits for
  room: a spool over its bound refuses the newest record and counts it.
- A torn tail (a crash in the middle of a write, or unsynced pages lost with the machine) is a record whose
  header or body is short or whose CRC does not match. The writer, when it starts, truncates the newest
  segment after its last good record and starts a new segment; so a segment is *final* once a later one
  exists, and only then may the reader treat a bad record as the end of the segment (in the newest segment
  it may be a write in progress, so the reader waits). The reader never invents a record: it returns only
  records whose CRC matches and whose body decodes (a CRC-valid record that does not decode is skipped and
  counted).
- Segment numbers are never reused (the writer starts after the highest segment and the checkpoint's), so a
  checkpoint can never point into a newer file by accident, even after every segment was delivered and
  deleted.
- The checkpoint is written atomically (temporary file, fsync, rename, fsync of the directory); segments
  wholly before it are deleted. A batch delivered but not yet checkpointed is delivered again after a
  crash: at-least-once, with the event id as the sink's idempotency key.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import threading
import zlib
from pathlib import Path

import msgspec

from framepool.processors.messages import DataMessage

HEADER = struct.Struct("<II")  # body length, crc32 of (length bytes + body)
MAX_RECORD = 32 << 20  # a longer length field is corruption (the intake caps every payload far below)
SEGMENT_SUFFIX = ".seg"
CHECKPOINT = "checkpoint"
LOCK = "writer.lock"
DEFAULT_SEGMENT_BYTES = 8 << 20

log = logging.getLogger("framepool.spool")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DataMessage)


class SpoolBusy(Exception):
    """Another writer holds this spool (a second supervisor on the same spool directory)."""


class Position(msgspec.Struct, frozen=True, order=True):
    """A place in a spool: the segment number and a byte offset in it."""

    segment: int
    offset: int


class SpoolRecord(msgspec.Struct, frozen=True):
    """One record read back: the message and the position just after it (what to checkpoint)."""

    message: DataMessage
    end: Position


class WriterStats(msgspec.Struct):
    """The writer's counters (they start at zero with each writer)."""

    appended: int = 0  # records written
    refused: int = 0  # records refused: spool full, record too large, or a write error
    appended_bytes: int = 0
    committed: Position = Position(0, 0)  # everything before this is fdatasync'd
    disk_bytes: int = 0  # segment bytes on disk at the last scan, plus what was appended since


def sink_spool(spool_dir: Path, sink_name: str) -> Path:
    """One sink's spool directory: the supervisor's writer and the bridge's reader agree on it here."""
    return spool_dir / sink_name


def encode_record(message: DataMessage) -> bytes:
    body = _encoder.encode(message)
    length = len(body).to_bytes(4, "little")
    return HEADER.pack(len(body), zlib.crc32(body, zlib.crc32(length))) + body


def segment_name(number: int) -> str:
    return f"{number:020d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    """The segment numbers present, ascending."""
    numbers = []
    with os.scandir(directory) as entries:
        for entry in entries:
            stem, _, suffix = entry.name.partition(".")
            if "." + suffix == SEGMENT_SUFFIX and stem.isdigit():
                numbers.append(int(stem))
    return sorted(numbers)


def parse_record(data: bytes | memoryview, offset: int) -> tuple[bytes | None, int]:
    """(body, next offset) for a good record at `offset`; (None, -1) if incomplete, (None, -2) if bad."""
    if len(data) - offset < HEADER.size:
        return None, -1
    length, crc = HEADER.unpack_from(data, offset)
    if length > MAX_RECORD:
        return None, -2
    end = offset + HEADER.size + length
    if len(data) < end:
        return None, -1
    body = bytes(data[offset + HEADER.size : end])
    if zlib.crc32(body, zlib.crc32(length.to_bytes(4, "little"))) != crc:
        return None, -2
    return body, end


def read_checkpoint(directory: Path) -> Position | None:
    try:
        data = json.loads((directory / CHECKPOINT).read_text())
        return Position(int(data["segment"]), int(data["offset"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        log.error("spool %s: unreadable checkpoint (%s): delivering from the oldest segment", directory, exc)
        return None


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def valid_end(path: Path) -> int:
    """The offset just after the last good record of a segment (a torn tail starts there)."""
    data = path.read_bytes()
    offset = 0
    while True:
        body, end = parse_record(data, offset)
        if body is None:
            return offset
        offset = end


class SpoolWriter:
    """The supervisor's end of one spool. `append` is cheap and never blocks on room; see the module doc."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        commit_interval: float = 0.02,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._interval = commit_interval
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolBusy(f"spool {directory} has another writer") from None
        self._guard = threading.Lock()  # the segment, its offset and the counters, shared with the committer
        self._retired: list[int] = []  # fds of full segments, synced and closed by the committer
        self._dir_dirty = False
        self.stats = WriterStats()
        self._scanned_at = 0  # appended_bytes when disk_bytes was last scanned
        self._segment, self._fd, self._offset = self._recover()
        self._stop = threading.Event()
        self._committer = threading.Thread(target=self._commit_loop, name="spool-commit", daemon=True)
        self._committer.start()

    def _recover(self) -> tuple[int, int, int]:
        segments = list_segments(self.directory)
        if segments:
            newest = self.directory / segment_name(segments[-1])
            end = valid_end(newest)
            if end < newest.stat().st_size:
                log.warning("spool %s: torn tail of %s truncated at %d", self.directory, newest.name, end)
                with open(newest, "r+b") as file:
                    file.truncate(end)
                    os.fsync(file.fileno())
        checkpoint = read_checkpoint(self.directory)
        number = max([0, *segments[-1:], *([checkpoint.segment] if checkpoint else [])]) + 1
        fd = self._create(number)
        self.stats.disk_bytes = self._scan()
        self.stats.committed = Position(number, 0)
        return number, fd, 0

    def _create(self, number: int) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(self.directory / segment_name(number), flags, 0o644)
        self._dir_dirty = True
        return fd

    def _scan(self) -> int:
        total = 0
        for number in list_segments(self.directory):
            with contextlib.suppress(FileNotFoundError):  # the bridge deletes delivered segments
                total += (self.directory / segment_name(number)).stat().st_size
        return total

    def append(self, message: DataMessage) -> bool:
        """Append one message; False (counted in `stats.refused`) if the spool is full or the write failed."""
        record = encode_record(message)
        with self._guard:
            stats = self.stats
            unscanned = stats.appended_bytes - self._scanned_at
            if len(record) > MAX_RECORD or stats.disk_bytes + unscanned + len(record) > self._max_bytes:
                stats.refused += 1
                return False
            if self._offset and self._offset + len(record) > self._segment_bytes:
                self._retired.append(self._fd)
                self._segment += 1
                self._fd, self._offset = self._create(self._segment), 0
            try:
                written = os.write(self._fd, record)
            except OSError as exc:
                written = -1
                log.error("spool %s: write failed: %s", self.directory, exc)
            if written != len(record):  # never leave a torn record behind a live writer
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._offset)
                stats.refused += 1
                return False
            self._offset += written
            stats.appended += 1
            stats.appended_bytes += written
            return True

    def position(self) -> Position:
        """Where the next record goes (everything before it is written, not necessarily synced)."""
        with self._guard:
            return Position(self._segment, self._offset)

    def _commit_loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except OSError as exc:
                log.error("spool %s: commit failed: %s", self.directory, exc)

    def flush(self) -> Position:
        """fdatasync what was appended (blocking: the committer thread's work; call it off the loop)."""
        with self._guard:
            fd, retired, self._retired = self._fd, self._retired, []
            target = Position(self._segment, self._offset)
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            appended_before_scan = self.stats.appended_bytes
        for old in retired:
            os.fdatasync(old)
            os.close(old)
        if target > self.stats.committed:
            os.fdatasync(fd)
        if dir_dirty:
            fsync_directory(self.directory)
        disk = self._scan()
        with self._guard:
            self.stats.committed = max(self.stats.committed, target)
            self.stats.disk_bytes, self._scanned_at = disk, appended_before_scan
        return target

    def close(self) -> None:
        """Stop the committer, sync everything, release the spool. Blocking (a final fdatasync)."""
        self._stop.set()
        self._committer.join()
        self.flush()
        os.close(self._fd)
        os.close(self._lock_fd)


class SpoolReader:
    """The bridge's end of one spool: records in order from the checkpoint; `commit` what was delivered."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        start = read_checkpoint(directory)
        segments = list_segments(directory)
        self.position = start or Position(segments[0] if segments else 1, 0)
        self.checkpointed = self.position
        self.corrupt = 0  # bad records skipped in final segments (torn tails, damage) and undecodable ones
        self._file: tuple[int, int] | None = None  # (segment number, fd)
        self._last_size = 0  # bytes of the record `_next` returned last

    def read(self, max_records: int = 1000, max_bytes: int = 4 << 20) -> list[SpoolRecord]:
        """The records after `position`, in order, up to the limits; [] when caught up with the writer."""
        records: list[SpoolRecord] = []
        size = 0
        while len(records) < max_records and size < max_bytes:
            record = self._next()
            if record is None:
                break
            records.append(record)
            size += self._last_size
        return records

    def _next(self) -> SpoolRecord | None:
        while True:
            segment, offset = self.position.segment, self.position.offset
            later = [number for number in list_segments(self.directory) if number > segment]
            fd = self._open(segment)  # decided `later` first: if a later segment exists, this one is final
            if fd is not None:
                record = self._parse_at(fd, segment, offset, final=bool(later))
                if record is not None:
                    return record
            if not later:
                return None  # the live tail: wait for the writer
            if fd is not None and os.fstat(fd).st_size > self.position.offset:
                self.corrupt += 1
                log.error("spool %s: segment %d damaged at %d, skipped", self.directory, segment, offset)
            self.position = Position(later[0], 0)

    def _parse_at(self, fd: int, segment: int, offset: int, final: bool) -> SpoolRecord | None:
        while True:
            header = os.pread(fd, HEADER.size, offset)
            length = HEADER.unpack(header)[0] if len(header) == HEADER.size else 0
            data = header + os.pread(fd, min(length, MAX_RECORD), offset + HEADER.size) if header else b""
            body, end = parse_record(data, 0)
            if body is None:
                return None  # incomplete or bad: the caller decides (wait, or skip a final segment's rest)
            next_position = Position(segment, offset + end)
            try:
                message = _decoder.decode(body)
            except msgspec.DecodeError as exc:
                self.corrupt += 1
                log.error(
                    "spool %s: undecodable record at %d:%d skipped: %s", self.directory, segment, offset, exc
                )
                self.position = next_position
                offset = next_position.offset
                continue
            self.position = next_position
            self._last_size = end
            return SpoolRecord(message, next_position)

    def _open(self, segment: int) -> int | None:
        if self._file is not None and self._file[0] == segment:
            return self._file[1]
        self._close_file()
        try:
            fd = os.open(self.directory / segment_name(segment), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        self._file = (segment, fd)
        return fd

    def _close_file(self) -> None:
        if self._file is not None:
            os.close(self._file[1])
            self._file = None

    def commit(self, position: Position) -> None:
        """Record `position` as delivered (atomically, durably) and delete the segments wholly before it.
        Blocking (two fsyncs): the bridge calls it in a thread."""
        temporary = self.directory / (CHECKPOINT + ".tmp")
        with open(temporary, "w") as file:
            file.write(json.dumps({"segment": position.segment, "offset": position.offset}))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.directory / CHECKPOINT)
        fsync_directory(self.directory)
        self.checkpointed = position
        for number in list_segments(self.directory):
            if number >= position.segment:
                break
            with contextlib.suppress(FileNotFoundError):
                (self.directory / segment_name(number)).unlink()

    def close(self) -> None:
        self._close_file()
