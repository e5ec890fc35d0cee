"""A user's own sink, exactly as docs/dataflows.md shows it (bridge process): appends events to a JSON-lines
file, fsync'd per batch, and skips event ids it already wrote (at-least-once in, exactly-once effect)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import ClassVar

import msgspec

from framepool.bridge.jsonform import event_to_json
from framepool.bridge.sink import SinkUnavailable
from framepool.processors.messages import DataMessage


class JsonLinesConfig(msgspec.Struct, forbid_unknown_fields=True):
    path: str  # the file to append to


class JsonLinesSink:
    Config: ClassVar[type[msgspec.Struct]] = JsonLinesConfig

    def __init__(self, name: str, config: JsonLinesConfig) -> None:
        self.name = name
        self.path = config.path
        self.seen: set[str] = set()

    async def open(self) -> None:
        self.seen = await asyncio.to_thread(self._written_ids)  # a redelivered event is skipped

    def _written_ids(self) -> set[str]:
        if not os.path.exists(self.path):
            return set()
        with open(self.path) as file:
            return {json.loads(line)["event_id"] for line in file if line.endswith("\n")}

    async def deliver(self, batch: Sequence[DataMessage]) -> None:
        fresh = [event for event in batch if event.event_id not in self.seen]
        try:
            await asyncio.to_thread(self._write, fresh)  # file I/O off the bridge's loop
        except OSError as exc:
            raise SinkUnavailable(str(exc)) from exc  # the bridge retries the batch with backoff
        self.seen.update(event.event_id for event in fresh)

    def _write(self, events: list[DataMessage]) -> None:
        with open(self.path, "a") as file:
            file.writelines(json.dumps(event_to_json(event)) + "\n" for event in events)
            file.flush()
            os.fsync(file.fileno())  # durable before deliver returns: then the bridge checkpoints

    async def close(self) -> None:
        pass
