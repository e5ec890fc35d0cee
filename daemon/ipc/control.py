"""The supervisor-worker control channel (both processes: `ControlChannel` in the supervisor, `WorkerChannel`
in a worker).

One `socketpair(AF_UNIX, SOCK_SEQPACKET)` per worker carries typed messages: a tagged union of msgspec
Structs, each encoded as msgpack behind a 4-byte little-endian length prefix, one message per datagram.
Ring and doorbell memfds ride along with the message that needs them (`socket.send_fds`). Frames never
cross this channel; it carries a few messages per stream and a ping per second.

Why SOCK_SEQPACKET rather than a byte stream: a datagram is delivered whole together with its ancillary
fds, so a message and its fds can never come apart and no reassembly buffer is needed; the length prefix
still catches a truncated datagram. Why msgspec and not pickle: the worker must not execute whatever
arrives, and a typed union documents the protocol in one place (the livekit agents IPC hand-writes its
wire format; we do not).

Every transport failure — peer gone, truncated, undecodable, oversize, unexpected fds — is a
`framepool.errors.ChannelError`. The supervisor side is non-blocking (asyncio `add_reader`/`add_writer`);
the worker side blocks, because a worker has nothing else to do while it waits.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import os
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Annotated

import msgspec

from framepool.errors import ChannelError
from framepool.processors.registry import ProcessorSpec

MAX_MESSAGE = 256 << 10  # bytes of one encoded message; far above anything the pool sends
MAX_FDS = 9  # fds one message may carry (WorkerStart with a blob ring; an attach carries at most four)
MAX_PER_TURN = 64  # messages the supervisor reads from one worker per event-loop turn
_PREFIX = struct.Struct("<I")


class ChannelClosed(ChannelError):
    """The peer closed its end: normally because its process is exiting."""


# Counters and seconds a worker reports: bounded by type, so a negative, NaN or absurd value is a malformed
# message (the worker is killed), never a number in the supervisor's statistics.
Count = Annotated[int, msgspec.Meta(ge=0, le=1 << 53)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=1e9)]


class _Message(msgspec.Struct, tag=True, kw_only=True):
    """Base of every control message; the tag is the class name."""


# -- supervisor -> worker -------------------------------------------------------------------------


class CallBudget(msgspec.Struct, frozen=True, kw_only=True):
    """How long one processor call may take (settings processor_budget_*; see `framepool.settings`)."""

    fixed_s: float = 0.0  # > 0: this budget for every stream; 0: derived from the frame duration
    frames: float = 10.0
    min_s: float = 0.25
    hard: float = 4.0  # multiple of the budget at which the supervisor cuts the call off
    over_limit: int = 20  # consecutive calls over budget that quarantine the processor


class WorkerStart(_Message):
    """The worker's whole configuration; fds: data bell (event, page), result bell (event, page),
    space bell (event, page), result ring, activity page (`framepool.ipc.activity`), then the blob ring
    (`framepool.ipc.blobs`) when `bytes_max` > 0."""

    index: int
    cpu: int | None
    prewarm: str
    processor_failure_limit: int
    result_max_bytes: int
    bytes_max: int = 0  # largest ctx.send_bytes blob; 0: no blob ring (send_bytes raises)
    budget: CallBudget = CallBudget()


class AttachStream(_Message):
    """Host a stream; fds: input ring, then the output ring if `has_output`, then the input ring's space
    bell (event, page) if `has_space_bell` (offline streams, whose producer waits for space)."""

    index: int
    key: int  # written at the start of each of this stream's result slots (framepool.ipc.slots)
    stream_id: str
    kind: str
    processors: list[ProcessorSpec]
    realtime: bool
    labels: dict[str, str]
    has_output: bool
    has_space_bell: bool
    gap: bool  # re-attached after a worker restart: the first frame carries the gap
    quarantined: list[int] = []  # indexes of processors quarantined on this stream: never constructed or run


class DetachStream(_Message):
    index: int


class DrainStream(_Message):
    index: int
    token: int


class ProbeProcessors(_Message):
    """Construct each processor once (with its per-worker resources) and drop it: a declarative agent's
    processors are tried at start, so one whose constructor raises fails `framepool start`, not a job."""

    token: int
    processors: list[ProcessorSpec]


class Ping(_Message):
    seq: int


class Shutdown(_Message):
    pass


# -- worker -> supervisor -------------------------------------------------------------------------


class WorkerReady(_Message):
    pid: int


class WorkerFailed(_Message):
    """Start-up failed in a way a restart will not fix (bad prewarm hook, bad ring fds)."""

    reason: str


class StreamAttached(_Message):
    index: int


class StreamAttachFailed(_Message):
    index: int
    reason: str


class StreamEvent(_Message):
    index: int
    event: str  # "processor_error" | "processor_disabled" | "processor_quarantined" (over budget)
    processor: str
    detail: str
    errors: Count  # the stream's processor exceptions so far (sent per failure streak, not per failure)
    processor_index: int = -1  # of the processor in the stream's spec (names may repeat)


class StreamDetached(_Message):
    index: int
    errors: Count
    busy: dict[str, Seconds]
    results_dropped: Count  # results of this stream a full result ring refused (realtime streams only)


class StreamDrained(_Message):
    index: int
    token: int
    errors: Count
    busy: dict[str, Seconds]


class ProcessorsProbed(_Message):
    token: int
    failures: dict[str, str]  # processor spec text → why it could not start


class Pong(_Message):
    seq: int  # the Ping's: a pong that answers no outstanding ping is a protocol violation
    # Seconds spent in each processor (in the stream's processor order) so far, for the streams that processed
    # frames since the previous pong: stream statistics stay current without a drain.
    busy: dict[int, list[Seconds]] = {}


class ShutdownAck(_Message):
    pass


Message = (
    WorkerStart
    | AttachStream
    | DetachStream
    | DrainStream
    | ProbeProcessors
    | Ping
    | Shutdown
    | WorkerReady
    | WorkerFailed
    | StreamAttached
    | StreamAttachFailed
    | StreamEvent
    | StreamDetached
    | StreamDrained
    | ProcessorsProbed
    | Pong
    | ShutdownAck
)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    """The framed bytes of one message; an oversize message is a ChannelError before anything is sent."""
    body = _encoder.encode(message)
    if len(body) > MAX_MESSAGE:
        raise ChannelError(
            f"control message {type(message).__name__} of {len(body)} bytes exceeds {MAX_MESSAGE}"
        )
    return _PREFIX.pack(len(body)) + body


def decode(frame: bytes) -> Message:
    """One message from a received datagram; anything malformed is a ChannelError."""
    if len(frame) < _PREFIX.size:
        raise ChannelError(f"truncated control message: {len(frame)} bytes, shorter than its length prefix")
    (length,) = _PREFIX.unpack_from(frame)
    if length > MAX_MESSAGE:
        raise ChannelError(
            f"oversize control message: length prefix says {length} bytes, the limit is {MAX_MESSAGE}"
        )
    if len(frame) - _PREFIX.size != length:
        raise ChannelError(
            f"truncated control message: length prefix says {length} bytes, got {len(frame) - _PREFIX.size}"
        )
    try:
        return _decoder.decode(memoryview(frame)[_PREFIX.size :])
    except msgspec.DecodeError as exc:
        # Escaped: msgspec quotes the offending value, which the peer chose (a newline would forge a log line)
        escaped = str(exc).encode("unicode_escape").decode()
        raise ChannelError(f"undecodable control message: {escaped}") from None


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(supervisor end, worker end), both close-on-exec; the worker end is handed to the child process."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def _receive(sock: socket.socket) -> tuple[Message, list[int]]:
    """Read one datagram (and its fds) from a readable socket; fds are closed if the message is bad."""
    try:
        # MSG_CMSG_CLOEXEC: received ring fds are close-on-exec, so nothing a processor execs inherits them.
        data, ancdata, flags, _ = sock.recvmsg(
            MAX_MESSAGE + _PREFIX.size + 1, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC
        )
    except (BlockingIOError, InterruptedError):
        raise
    except OSError as exc:
        raise ChannelError(f"control channel receive failed: {exc.strerror or exc}") from None
    fds = _fds_of(ancdata)
    try:
        if not data:
            raise ChannelClosed("control channel closed by the peer")
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ChannelError("oversize control message: the datagram or its fds were truncated")
        if len(data) > MAX_MESSAGE + _PREFIX.size:
            raise ChannelError(f"oversize control message: {len(data)} bytes")
        return decode(data), fds
    except ChannelError:
        close_fds(fds)
        raise


def _fds_of(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return list(fds)


def close_fds(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class WorkerChannel:
    """The worker's blocking end of the channel."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, message: Message) -> None:
        try:
            self._sock.sendall(encode(message))
        except OSError as exc:
            raise ChannelError(f"control channel send failed: {exc.strerror or exc}") from None

    def receive(self) -> tuple[Message, list[int]]:
        """Block until one message arrives; ChannelError when the supervisor is gone."""
        return _receive(self._sock)

    def close(self) -> None:
        self._sock.close()


class ControlChannel:
    """The supervisor's non-blocking end: messages are handed to `on_message`, failures to `on_error` (once).

    Sends never block the event loop: a datagram the socket cannot take now (a worker that stopped reading)
    waits in a queue flushed by `add_writer`.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[Message, list[int]], None],
        on_error: Callable[[ChannelError], None],
    ) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._on_message = on_message
        self._on_error = on_error
        self._outbox: collections.deque[tuple[bytes, list[int]]] = collections.deque()
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._readable)

    def send(self, message: Message, fds: Sequence[int] = ()) -> None:
        """Queue a message (fds are duplicated by the kernel at send time; the caller keeps its own)."""
        if self._closed:
            raise ChannelError("control channel is closed")
        self._outbox.append((encode(message), list(fds)))
        if len(self._outbox) == 1:
            self._flush()

    def _flush(self) -> None:
        while self._outbox:
            data, fds = self._outbox[0]
            try:
                socket.send_fds(self._sock, [data], fds) if fds else self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self._sock.fileno(), self._writable)
                return
            except OSError as exc:
                self._fail(ChannelError(f"control channel send failed: {exc.strerror or exc}"))
                return
            self._outbox.popleft()

    def _writable(self) -> None:
        self._loop.remove_writer(self._sock.fileno())
        self._flush()

    def _readable(self) -> None:
        # At most MAX_PER_TURN messages per callback: the reader is level-triggered, so the rest wait for the
        # next loop turn and a flooding worker cannot hold the loop that serves every room.
        for _ in range(MAX_PER_TURN):
            if self._closed:
                return
            try:
                message, fds = _receive(self._sock)
            except (BlockingIOError, InterruptedError):
                return
            except ChannelError as exc:
                self._fail(exc)
                return
            self._on_message(message, fds)

    def _fail(self, error: ChannelError) -> None:
        if self._closed:
            return
        self.close()
        self._on_error(error)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._loop.remove_writer(self._sock.fileno())
        self._outbox.clear()
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._closed
