"""What a room session holds between a worker's results and the room (supervisor process).

A worker decides how many results it writes; the supervisor must not let that decide its own memory or the
room's traffic. `ResultOutbox` is a bounded FIFO per room: putting never blocks (it is called from the
pool's drain on the event loop) and a full outbox drops its oldest entry, counted, because a live result
loses its value with age. Each stream's results also pass a `framepool.ratelimit.TokenBucket` first
(`result_rate`): those beyond it are dropped and counted before they are even encoded, so a flooding
processor costs its own stream's results and nothing else (its neighbours' results are neither delayed nor
crowded out of the outbox).

Rejected: asyncio.Queue(maxsize) (put_nowait raises when full instead of making room, and the newest
result, not the oldest, would be lost); blocking the drain (the event loop that holds every room would
stall behind one slow data channel).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

T = TypeVar("T")


class ResultOutbox(Generic[T]):
    """Bounded FIFO with drop-oldest; `join` waits until everything put was `done`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.dropped = 0
        self._items: collections.deque[T] = collections.deque()
        self._ready = asyncio.Event()
        self._unfinished = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        if len(self._items) >= self.capacity:
            self._items.popleft()
            self.dropped += 1
            self._unfinished -= 1
        self._items.append(item)
        self._unfinished += 1
        self._idle.clear()
        self._ready.set()

    async def get(self) -> T:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def done(self) -> None:
        """One item taken by `get` has been handled."""
        self._unfinished -= 1
        if self._unfinished <= 0:
            self._unfinished = 0
            self._idle.set()

    async def join(self) -> None:
        await self._idle.wait()
