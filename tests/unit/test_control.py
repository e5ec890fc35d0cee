"""The control channel: framing, fd passing, and every malformed input surfacing as ChannelError."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import struct

import msgspec
import pytest

from framepool.errors import ChannelError
from framepool.ipc import control
from framepool.ipc.control import (
    AttachStream,
    ControlChannel,
    Ping,
    Pong,
    StreamDetached,
    WorkerChannel,
    WorkerStart,
    channel_pair,
)
from framepool.processors.registry import ProcessorSpec
from tests.support.timeouts import EVENT

START = WorkerStart(
    index=2,
    cpu=1,
    prewarm="m:f",
    processor_failure_limit=5,
    result_max_bytes=65536,
)


def test_round_trip_every_field() -> None:
    attach = AttachStream(
        index=7,
        key=(1 << 64) - 1,
        stream_id="room/alice/TR_1",
        kind="audio",
        processors=[ProcessorSpec("audio-level", {"window_ms": 100})],
        realtime=False,
        labels={"room": "r"},
        has_output=True,
        has_space_bell=True,
        gap=True,
    )
    for message in (
        START,
        attach,
        Ping(seq=3),
        StreamDetached(index=1, errors=0, busy={"a": 0.5}, results_dropped=3),
    ):
        assert control.decode(control.encode(message)) == message


def test_blocking_pair_passes_fds() -> None:
    sup, work = channel_pair()
    worker = WorkerChannel(work)
    fd = os.memfd_create("control-test")
    os.write(fd, b"payload")
    try:
        socket.send_fds(sup, [control.encode(Ping(seq=1))], [fd])
        message, fds = worker.receive()
        assert message == Ping(seq=1)
        assert len(fds) == 1 and fds[0] != fd
        assert os.pread(fds[0], 7, 0) == b"payload"
        assert not os.get_inheritable(fds[0])  # close-on-exec: a processor's exec never inherits a ring
        assert fcntl.fcntl(fds[0], fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        control.close_fds(fds)
    finally:
        os.close(fd)
        sup.close()
        worker.close()


async def test_async_end_receives_and_sends() -> None:
    sup, work = channel_pair()
    worker = WorkerChannel(work)
    received: asyncio.Queue[control.Message] = asyncio.Queue()
    errors: list[ChannelError] = []
    failed = asyncio.Event()

    def on_error(error: ChannelError) -> None:
        errors.append(error)
        failed.set()

    channel = ControlChannel(sup, lambda m, fds: received.put_nowait(m), on_error)
    fd = os.memfd_create("control-test")
    try:
        channel.send(START, [fd, fd])
        message, fds = await asyncio.to_thread(worker.receive)
        assert message == START and len(fds) == 2
        control.close_fds(fds)
        worker.send(Pong(seq=4))
        assert await asyncio.wait_for(received.get(), EVENT) == Pong(seq=4)
        worker.close()
        await asyncio.wait_for(failed.wait(), EVENT)
        assert "closed by the peer" in str(errors[0])
        assert channel.closed
        with pytest.raises(ChannelError, match="closed"):
            channel.send(Ping(seq=5))
    finally:
        os.close(fd)
        channel.close()


def test_peer_gone_is_channel_error() -> None:
    sup, work = channel_pair()
    worker = WorkerChannel(work)
    sup.close()
    with pytest.raises(ChannelError, match="closed by the peer"):
        worker.receive()
    with pytest.raises(ChannelError, match="send failed"):
        worker.send(Ping(seq=1))
    worker.close()


@pytest.mark.parametrize(
    ("datagram", "match"),
    [
        (b"\x01\x00", "truncated"),
        (struct.pack("<I", 10) + b"abc", "truncated"),
        (struct.pack("<I", 3) + b"\xc1\xc1\xc1", "undecodable"),
        (struct.pack("<I", 11) + msgspec.msgpack.encode({"type": "Nope"}), "undecodable"),
        (struct.pack("<I", control.MAX_MESSAGE + 1), "oversize"),
        (struct.pack("<I", control.MAX_MESSAGE + 8) + bytes(control.MAX_MESSAGE + 8), "oversize"),
    ],
)
def test_malformed_datagrams(datagram: bytes, match: str) -> None:
    sup, work = channel_pair()
    sup.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    worker = WorkerChannel(work)
    fd = os.memfd_create("control-test")
    try:
        socket.send_fds(sup, [datagram], [fd])
        before = set(os.listdir("/proc/self/fd"))
        with pytest.raises(ChannelError, match=match):
            worker.receive()
        # The fds of a rejected message are closed, not leaked.
        assert set(os.listdir("/proc/self/fd")) <= before
    finally:
        os.close(fd)
        sup.close()
        worker.close()


def test_oversize_message_refused_before_sending() -> None:
    big = StreamDetached(index=1, errors=0, busy={f"p{i}": 0.0 for i in range(40000)}, results_dropped=0)
    with pytest.raises(ChannelError, match="exceeds"):
        control.encode(big)


@pytest.mark.parametrize(
    "message",
    [
        {"type": "StreamDetached", "index": 1, "errors": -1, "busy": {}, "results_dropped": 0},
        {"type": "StreamDetached", "index": 1, "errors": 0, "busy": {}, "results_dropped": 1 << 60},
        {"type": "StreamDrained", "index": 1, "token": 1, "errors": 0, "busy": {"p": -0.5}},
        {"type": "Pong", "seq": 1, "busy": {1: [float("nan")]}},
        {"type": "Pong", "seq": 1, "busy": {1: [float("inf")]}},
        {"type": "StreamEvent", "index": 1, "event": "e", "processor": "p", "detail": "", "errors": -3},
    ],
    ids=["negative count", "absurd count", "negative seconds", "nan seconds", "infinite seconds", "errors"],
)
def test_counters_a_worker_reports_are_bounded_by_type(message: dict[str, object]) -> None:
    """A worker's counters reach stream statistics: a negative, NaN or absurd value is a malformed message
    (the supervisor kills the worker), never a figure."""
    body = msgspec.msgpack.encode(message)
    with pytest.raises(ChannelError, match="undecodable control message: Expected"):
        control.decode(struct.pack("<I", len(body)) + body)
