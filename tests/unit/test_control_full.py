"""A full control socket (test process; a real socketpair, the real supervisor end on the event loop): a
worker that stops reading never blocks the supervisor, loses nothing once it reads again, and a worker that
dies with messages queued is one ChannelError."""

from __future__ import annotations

import asyncio
import os

from framepool.errors import ChannelError
from framepool.ipc import control
from framepool.ipc.control import ControlChannel, Ping, WorkerChannel, channel_pair
from tests.support.timeouts import EVENT

COUNT = 20_000  # far more than a socketpair's buffer holds (a few hundred datagrams)


async def test_a_worker_that_stops_reading_blocks_nothing_and_loses_nothing() -> None:
    sup, work = channel_pair()
    worker = WorkerChannel(work)
    errors: list[ChannelError] = []
    channel = ControlChannel(sup, lambda m, fds: None, errors.append)
    fd = os.memfd_create("control-full")
    try:
        for seq in range(COUNT):  # returns at once: what the socket cannot take waits in the queue
            channel.send(Ping(seq=seq))
        assert channel._outbox, "the socket never filled: the test proves nothing"
        # An fd queued behind the backlog (the caller keeps its copy until the reply, as the pool does: the
        # kernel duplicates it only when the datagram is finally sent).
        channel.send(control.DetachStream(index=7), [fd])

        def read_all() -> tuple[list[int], list[int]]:
            seqs = []
            for _ in range(COUNT):
                message, _fds = worker.receive()
                assert isinstance(message, Ping)
                seqs.append(message.seq)
            last, fds = worker.receive()
            assert last == control.DetachStream(index=7)
            return seqs, fds

        seqs, fds = await asyncio.wait_for(asyncio.to_thread(read_all), EVENT)
        assert seqs == list(range(COUNT)) and not errors
        assert len(fds) == 1 and os.fstat(fds[0])  # a descriptor the worker can use
        control.close_fds(fds)
    finally:
        os.close(fd)
        channel.close()
        worker.close()


async def test_a_worker_gone_with_messages_queued_is_one_channel_error() -> None:
    sup, work = channel_pair()
    failed = asyncio.Event()
    errors: list[ChannelError] = []

    def on_error(error: ChannelError) -> None:
        errors.append(error)
        failed.set()

    channel = ControlChannel(sup, lambda m, fds: None, on_error)
    try:
        for seq in range(COUNT):
            channel.send(Ping(seq=seq))
        assert channel._outbox
        work.close()  # the worker dies without reading
        await asyncio.wait_for(failed.wait(), EVENT)
        assert len(errors) == 1 and channel.closed and "\n" not in str(errors[0])
    finally:
        channel.close()
