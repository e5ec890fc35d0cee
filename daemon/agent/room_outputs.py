"""What a job sends to its room besides processor results: data packets, text, attributes, RPC calls
(supervisor process).

`JobContext.outputs` is one `RoomOutputs` per job. Calls never block the caller (a data consumer runs on the
loop that holds every room): packets and texts go into a bounded outbox (`room_outbox` entries; full, the
oldest is dropped and counted) that one sender task empties in order; attribute updates are merged and sent
at most every `ATTRIBUTES_INTERVAL` seconds (the last value of each key wins), because each one is a
signalling round trip that every participant of the room receives; an RPC call is awaited by its caller.
What the room's server refuses (a packet over LiveKit's limit, a permission it lacks) is logged and counted,
never raised into the consumer that queued it; what can be checked at the call (a packet over
`MAX_PACKET_BYTES`) raises ValueError there, naming the limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import msgspec
from livekit import rtc

from framepool.agent.outbox import ResultOutbox
from framepool.tasks import TaskSet

log = logging.getLogger("framepool.agent.outputs")

MAX_PACKET_BYTES = 15 * 1024  # LiveKit's data packet limit; longer data goes as a text or byte stream
ATTRIBUTES_INTERVAL = 0.5  # seconds between two attribute updates of the agent participant
Send = Callable[[], Coroutine[Any, Any, object]]


class OutputStats(msgspec.Struct, kw_only=True):
    sent: int  # packets and texts the room accepted
    dropped: int  # dropped from the full outbox (oldest first)
    failed: int  # refused by the room or the SDK (logged)
    attribute_updates: int  # attribute updates sent (each carries every change made since the last)


class RoomOutputs:
    """One job's outputs to its room (see the module docstring)."""

    def __init__(self, room: rtc.Room, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.room = room
        self._outbox: ResultOutbox[Send] = ResultOutbox(capacity)
        self._tasks = TaskSet("room outputs", log)  # the sender
        self._updates = TaskSet("attribute updates", log)
        self._clock = clock
        self._sender: asyncio.Task[None] | None = None
        self._pending_attributes: dict[str, str] = {}
        self._attributes_due = 0.0
        self._attributes_timer: asyncio.TimerHandle | None = None
        self._sent = self._failed = self._attribute_updates = 0

    def publish_data(
        self,
        payload: bytes | str,
        *,
        topic: str = "",
        reliable: bool = True,
        destinations: Iterable[str] = (),
    ) -> None:
        """Queue one data packet to `destinations` (identities; default everyone)."""
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        if len(data) > MAX_PACKET_BYTES:
            raise ValueError(
                f"a data packet of {len(data)} bytes is over LiveKit's {MAX_PACKET_BYTES}; use send_text "
                "or a byte stream for longer data"
            )
        to = list(destinations)
        self._queue(
            lambda: self.room.local_participant.publish_data(
                data, reliable=reliable, destination_identities=to, topic=topic
            )
        )

    def send_text(
        self,
        text: str,
        *,
        topic: str = "lk.chat",
        destinations: Iterable[str] = (),
        attributes: dict[str, str] | None = None,
    ) -> None:
        """Queue a text stream (any length; `lk.chat` is where LiveKit's chat components read)."""
        to = list(destinations)
        self._queue(
            lambda: self.room.local_participant.send_text(
                text, topic=topic, destination_identities=to, attributes=attributes
            )
        )

    def set_attributes(self, attributes: dict[str, str]) -> None:
        """Merge into the agent participant's attributes; sent within ATTRIBUTES_INTERVAL (coalesced)."""
        self._pending_attributes.update(attributes)
        if self._attributes_timer is None:
            delay = max(0.0, self._attributes_due - self._clock())
            self._attributes_timer = asyncio.get_running_loop().call_later(delay, self._send_attributes)

    async def perform_rpc(
        self, identity: str, method: str, payload: str, response_timeout: float = 8.0
    ) -> str:
        """Call `method` on the participant `identity`; its answer, or rtc.RpcError (LiveKit's codes: the
        callee has `response_timeout` seconds, the SDK's default)."""
        return await self.room.local_participant.perform_rpc(
            destination_identity=identity, method=method, payload=payload, response_timeout=response_timeout
        )

    def stats(self) -> OutputStats:
        return OutputStats(
            sent=self._sent,
            dropped=self._outbox.dropped,
            failed=self._failed,
            attribute_updates=self._attribute_updates,
        )

    async def flush(self) -> None:
        """Wait until everything queued so far was handed to the room (the job's shutdown ladder)."""
        if self._attributes_timer is not None:
            self._attributes_timer.cancel()
            self._send_attributes()
        await self._outbox.join()
        await self._updates.wait()

    async def aclose(self) -> None:
        if self._attributes_timer is not None:
            self._attributes_timer.cancel()
            self._attributes_timer = None
        await self._updates.aclose()
        await self._tasks.aclose()

    # -- sending --------------------------------------------------------------------------------------

    def _queue(self, send: Send) -> None:
        self._outbox.put(send)
        if self._sender is None:
            self._sender = self._tasks.spawn(self._send_queued(), name="room outputs sender")

    async def _send_queued(self) -> None:
        while True:
            send = await self._outbox.get()
            try:
                await send()
                self._sent += 1
            except Exception as exc:  # a refused packet must not end the sender; the count shows it
                self._failed += 1
                log.warning("room output not sent: %s", exc)
            finally:
                self._outbox.done()

    def _send_attributes(self) -> None:
        self._attributes_timer = None
        if not self._pending_attributes:
            return
        update, self._pending_attributes = self._pending_attributes, {}
        self._attributes_due = self._clock() + ATTRIBUTES_INTERVAL
        self._attribute_updates += 1
        self._updates.spawn(self._apply_attributes(update), name="attribute update")

    async def _apply_attributes(self, update: dict[str, str]) -> None:
        try:
            await self.room.local_participant.set_attributes(update)
        except Exception as exc:
            self._failed += 1
            log.warning("attribute update not applied: %s", exc)
