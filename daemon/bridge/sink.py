"""The API a sink implements to receive room data from framepool (bridge process).

A sink is constructed from its validated config, opened once, then handed batches of `DataMessage`s in the
order of each room. Delivery is at-least-once: after a failure, a crash or a restart the same events may
come again (same `event_id`), so a sink either dedupes on `event_id` or writes idempotently. `deliver`
returns only once the whole batch is durable at the destination (acknowledged, committed); it raises
`SinkUnavailable` when it may succeed later (the bridge retries with jittered backoff, honouring
`retry_after`), and `SinkRejected` for events the destination will never take (they go to the sink's
dead-letter file, named in the log, and delivery goes on).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

import msgspec

from framepool.processors.messages import DataMessage


class SinkUnavailable(Exception):
    """Delivery failed but may succeed later (connection refused, 5xx, timeout): retry the same batch."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after  # seconds the destination asked for (HTTP Retry-After), if any


class SinkRejected(Exception):
    """The destination refused these events for good (HTTP 4xx other than 408/429, a constraint that is not
    a duplicate): they go to the dead-letter file. `events`: the refused ones (default: the whole batch)."""

    def __init__(self, reason: str, events: Sequence[DataMessage] | None = None) -> None:
        super().__init__(reason)
        self.events = events


class Sink(Protocol):
    """One destination (see the module docstring). `Config` is its msgspec config struct."""

    Config: ClassVar[type[msgspec.Struct]]
    name: str  # the sink's name in the config, for logs and metrics

    async def open(self) -> None:
        """Connect, create what must exist (a table); SinkUnavailable if the destination is not there yet."""
        ...

    async def deliver(self, batch: Sequence[DataMessage]) -> None:
        """Make `batch` durable at the destination, all of it, or raise (see the module docstring)."""
        ...

    async def close(self) -> None: ...
