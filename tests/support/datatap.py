"""What the loopback dev server relayed, seen from inside it (test process; the dev server runs in the test's
event loop): a registry listener that records every data packet the server forwarded, so a test can
assert what the SDK put on the wire (RPC v1 packets or v2 streams, inline or chunked, compressed or not).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from livekit.protocol import models

from framepool.devserver.rooms import Participant, Room
from framepool.devserver.server import DevServer


@dataclass(frozen=True)
class Relayed:
    room: str
    sender: str
    packet: models.DataPacket

    @property
    def kind(self) -> str:
        return self.packet.WhichOneof("value") or ""


class DataTap:
    """Records every packet a dev server relays; `next` awaits one matching a predicate."""

    def __init__(self, server: DevServer) -> None:
        self.relayed: list[Relayed] = []
        self._waiters: list[tuple[Callable[[Relayed], bool], asyncio.Future[Relayed]]] = []
        server.rooms.add_listener(self)

    def data_relayed(self, room: Room, sender: Participant | None, packet: models.DataPacket) -> None:
        copy = models.DataPacket()
        copy.CopyFrom(packet)
        record = Relayed(room.name, sender.identity if sender else "", copy)
        self.relayed.append(record)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(record):
                future.set_result(record)

    def in_room(self, room: str) -> list[Relayed]:
        return [r for r in self.relayed if r.room == room]

    def next(self, predicate: Callable[[Relayed], bool]) -> asyncio.Future[Relayed]:
        """A future for the next relayed packet matching `predicate` (create it before causing the packet)."""
        future: asyncio.Future[Relayed] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        future.add_done_callback(lambda _: self._waiters.remove(entry))
        return future
