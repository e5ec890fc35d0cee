"""The supervisor's side of a worker's blob ring: `ctx.send_bytes` blobs on their way to the sinks
(supervisor process).

Created with the worker's result ring and drained with it (`WorkerProcess.drain_results`), one whole blob
per slot (`framepool.ipc.blobs`, which also says why); every slot is validated before a sink sees it, and
a malformed one is the worker breaking the protocol (SlotError, as for results).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from framepool.ipc.blobs import blob_slot_bytes, blob_stream
from framepool.ipc.ring import POLICY_BLOCK, Doorbell, FrameRing

if TYPE_CHECKING:
    from framepool.pool.stream import StreamAttachment


def blob_ring(slots: int, max_data: int, space_bell: Doorbell) -> BlobRing | None:
    """A worker's blob ring; None when `bytes_ring_slots` is 0 (send_bytes switched off)."""
    return BlobRing(slots, max_data, space_bell) if slots else None


class BlobRing:
    """One worker's blob ring, `slots` blobs of up to `max_data` bytes, released with `space_bell` rung for
    a worker waiting for space (offline back-pressure)."""

    def __init__(self, slots: int, max_data: int, space_bell: Doorbell) -> None:
        self.slots = slots
        self.max_data = max_data
        self.ring = FrameRing.create(slots, blob_slot_bytes(max_data), POLICY_BLOCK)
        self.ring.bind(None, space_bell)

    @property
    def fd(self) -> int:
        return self.ring.fd

    def pending(self) -> bool:
        return self.ring.pending() > 0

    def drain(self, attachments: Mapping[int, StreamAttachment]) -> int:
        """Hand up to a ring's worth of blobs to their streams' sinks; SlotError at a malformed slot."""
        count, ring = 0, self.ring
        while count < self.slots and (item := ring.peek()) is not None:
            header, view = item
            del item
            try:
                attachment = attachments.get(blob_stream(header))
                if attachment is not None:  # None: a stream detached meanwhile
                    attachment.deliver_blob(header, view, self.max_data)
            finally:
                view.release()  # even when raising: the ring closes later and must have no view left
            ring.release()
            count += 1
        return count

    def close(self) -> None:
        self.ring.close()
