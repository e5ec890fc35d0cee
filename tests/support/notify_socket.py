"""systemd's end of the notification protocol, for tests: a datagram socket that records every message a
daemon sends to $NOTIFY_SOCKET with the time it arrived (test process)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

from tests.support.timeouts import EVENT

Message = dict[str, str]


class NotifySocket:
    """Bound at `path`; `messages` holds (loop time, fields) for every datagram, in arrival order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[tuple[float, Message]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.setblocking(False)
        self._arrived = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._receive)

    def _receive(self) -> None:
        while True:
            try:
                raw = self._sock.recv(4096)
            except BlockingIOError:
                return
            fields = dict(line.split("=", 1) for line in raw.decode().splitlines())
            self.messages.append((self._loop.time(), fields))
            self._arrived.set()

    async def wait_for(
        self, predicate: Callable[[Message], bool], after: int = 0, within: float = EVENT
    ) -> int:
        """The index of the first message from index `after` on that satisfies `predicate` (waits for it)."""

        async def search() -> int:
            index = after
            while True:
                while index < len(self.messages):
                    if predicate(self.messages[index][1]):
                        return index
                    index += 1
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(search(), within)

    def times(self, key: str, after: int = 0) -> list[float]:
        """Arrival times of the messages from index `after` on that carry `key`."""
        return [at for at, fields in self.messages[after:] if key in fields]

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
