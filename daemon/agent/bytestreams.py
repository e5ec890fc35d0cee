"""Blobs from processors (`ctx.send_bytes`) to a room as LiveKit byte streams (supervisor process).

A blob is up to `bytes_max` bytes (a JPEG for a vision model), far above the 15 KiB of a data packet, so it
leaves as a byte stream (`LocalParticipant.stream_bytes`: a header, then 15 kB chunks) on the topic the
processor gave it, named as it named it, with its MIME type and attributes: the processor's own, then
`participant`, `track`, `processor`, `frame_time_us` and `seq` as a result message carries them
(`framepool.ipc.blobs.blob_attributes`; a processor cannot override those).

The supervisor bounds what a worker's blobs may cost it. Each stream passes a `TokenBucket` of
`bytes_rate` blobs per second first (the rest are dropped and counted); the room's `ByteStreamSender`
holds at most `bytes_in_flight` blobs waiting, in a drop-oldest outbox (`framepool.agent.outbox`: a late
snapshot is worth less than the next one), and sends one at a time, so a room holds at most
`(bytes_in_flight + 1) x bytes_max` bytes of blobs however many streams it has. What the room refuses is
logged and counted, never raised into the pool's drain.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from livekit import rtc

from framepool.agent.outbox import ResultOutbox
from framepool.ipc.blobs import Blob
from framepool.tasks import TaskSet

log = logging.getLogger("framepool.agent.bytestreams")


class ByteStreamStats(msgspec.Struct, kw_only=True):
    sent: int  # byte streams the room accepted
    dropped: int  # dropped from the full outbox (oldest first)
    failed: int  # refused by the room or the SDK (logged)


class ByteStreamSender:
    """One room's blobs on their way out (see the module docstring)."""

    def __init__(self, room: rtc.Room, capacity: int) -> None:
        self.room = room
        self._outbox: ResultOutbox[tuple[Blob, dict[str, str], tuple[str, ...]]] = ResultOutbox(capacity)
        self._tasks = TaskSet("byte streams", log)
        self._sender: asyncio.Task[None] | None = None
        self._sent = self._failed = 0

    def put(self, blob: Blob, attributes: dict[str, str], destinations: tuple[str, ...] = ()) -> None:
        """Queue `blob` with these byte-stream attributes, to `destinations` (identities; default everyone).
        Never blocks (called from the pool's drain)."""
        self._outbox.put((blob, attributes, destinations))
        if self._sender is None:
            self._sender = self._tasks.spawn(self._send_queued(), name="byte stream sender")

    def stats(self) -> ByteStreamStats:
        return ByteStreamStats(sent=self._sent, dropped=self._outbox.dropped, failed=self._failed)

    async def flush(self) -> None:
        """Wait until every blob queued so far was handed to the room."""
        await self._outbox.join()

    async def aclose(self) -> None:
        await self._tasks.aclose()

    async def _send_queued(self) -> None:
        while True:
            blob, attributes, destinations = await self._outbox.get()
            try:
                writer = await self.room.local_participant.stream_bytes(
                    blob.name,
                    total_size=len(blob.data),
                    mime_type=blob.mime_type,
                    attributes=attributes,
                    destination_identities=list(destinations),
                    topic=blob.topic,
                )
                await writer.write(blob.data)
                await writer.aclose()
                self._sent += 1
            except Exception as exc:  # a closed room must not end the sender; the count shows losses
                self._failed += 1
                log.warning("byte stream %r on %r not sent: %s", blob.name, blob.topic, exc)
            finally:
                self._outbox.done()
