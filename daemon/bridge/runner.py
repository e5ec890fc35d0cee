"""One sink's delivery loop: tail its spool, batch, deliver, retry, dead-letter, checkpoint (bridge process).

    read a batch (up to batch_max records, lingering up to batch_ms for more)
      → sink.deliver(batch)
          ok              → checkpoint the batch's end (atomic, fsync'd in a thread), delete spent segments
          SinkUnavailable → wait (jittered exponential backoff, at least the sink's retry_after), same batch
          SinkRejected    → append the refused events to the dead-letter file (fsync'd), deliver the rest
                            again (an event the sink already took may come twice: at-least-once)
          anything else   → a bug in the sink: logged with its traceback, retried like SinkUnavailable

Nothing is checkpointed before it is delivered or dead-lettered, so a crash anywhere costs a redelivery,
never an event. Stopping (SIGTERM) lets the runner finish what the spool holds; the process bounds that
with its stop timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Sequence

import msgspec

from framepool.bridge.jsonform import event_to_json
from framepool.bridge.sink import Sink, SinkRejected, SinkUnavailable
from framepool.ipc.spool import SpoolReader, SpoolRecord
from framepool.processors.messages import DataMessage

DEAD_LETTER = "dead-letter.jsonl"
RETRY_AFTER_CAP = 300.0  # seconds: a destination asking for more is still retried after this long
RECHECK = 1.0  # seconds between re-reads without a wake-up (a lost inotify event costs latency, not data)
log = logging.getLogger("framepool.bridge")


class DeliveryOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    batch_max: int = 100  # records per deliver call
    batch_ms: float = 20.0  # how long a batch that is not full waits for more records
    retry_initial: float = 0.5  # seconds before the first retry; doubled per failure
    retry_max: float = 30.0  # longest backoff between retries (Retry-After may ask for more)


class RunnerStats(msgspec.Struct):
    delivered: int = 0  # events the sink acknowledged (a redelivered event counts again)
    dead_lettered: int = 0
    retries: int = 0
    batches: int = 0


def backoff(attempt: int, options: DeliveryOptions, retry_after: float | None) -> float:
    """Seconds before retry `attempt` (0-based): full exponential, jittered to [½, 1] of it, ≥ retry_after."""
    delay = min(options.retry_max, options.retry_initial * 2.0**attempt)
    delay = random.uniform(delay / 2, delay)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay


class SinkRunner:
    """Delivers one spool to one sink until `stopping` is set and the spool is caught up."""

    def __init__(
        self,
        sink: Sink,
        reader: SpoolReader,
        options: DeliveryOptions,
        changed: asyncio.Event,
        stopping: asyncio.Event,
    ) -> None:
        self.sink = sink
        self.reader = reader
        self.options = options
        self.stats = RunnerStats()
        self._changed = changed
        self._stopping = stopping
        self.dead_letter_path = reader.directory / DEAD_LETTER

    async def run(self) -> None:
        await self._retrying("open", self.sink.open)
        try:
            while batch := await self._next_batch():
                await self._deliver([record.message for record in batch])
                await asyncio.to_thread(self.reader.commit, batch[-1].end)
                self.stats.batches += 1
        finally:
            await self.sink.close()

    async def _next_batch(self) -> list[SpoolRecord]:
        limit = self.options.batch_max
        while True:
            self._changed.clear()  # before reading: a write after the read sets it again
            records = self.reader.read(limit)
            if records:
                break
            if self._stopping.is_set():
                return []
            await self._wait_change(RECHECK)
        deadline = time.monotonic() + self.options.batch_ms / 1000
        while len(records) < limit and not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._changed.clear()
            more = self.reader.read(limit - len(records))
            records.extend(more)
            if not more:
                await self._wait_change(left)
        return records

    async def _wait_change(self, seconds: float) -> None:
        waits = [asyncio.ensure_future(self._changed.wait()), asyncio.ensure_future(self._stopping.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    async def _deliver(self, events: list[DataMessage]) -> None:
        pending = events
        while pending:
            try:
                await self._retrying("deliver", lambda batch=pending: self.sink.deliver(batch))
            except SinkRejected as exc:
                refused = list(exc.events) if exc.events is not None else pending
                await asyncio.to_thread(self._dead_letter, refused, str(exc))
                ids = {event.event_id for event in refused}
                pending = [event for event in pending if event.event_id not in ids]
                continue
            self.stats.delivered += len(pending)
            return

    async def _retrying(self, what: str, call: object) -> None:
        """Await `call()` until it does not raise SinkUnavailable (or a sink bug); SinkRejected passes."""
        attempt = 0
        while True:
            try:
                await call()  # type: ignore[operator]
                if attempt:
                    log.info("sink %s: %s succeeded after %d retries", self.sink.name, what, attempt)
                return
            except SinkRejected:
                raise
            except SinkUnavailable as exc:
                delay = backoff(attempt, self.options, exc.retry_after)
                level = logging.WARNING if attempt in (0, 5) or attempt % 50 == 0 else logging.DEBUG
                log.log(
                    level,
                    "sink %s: %s unavailable (%s): retry %d in %.2f s",
                    self.sink.name,
                    what,
                    exc,
                    attempt + 1,
                    delay,
                )
            except Exception:
                delay = backoff(attempt, self.options, None)
                log.exception(
                    "sink %s: %s raised: retry %d in %.2f s", self.sink.name, what, attempt + 1, delay
                )
            attempt += 1
            self.stats.retries += 1
            await asyncio.sleep(delay)  # the backoff itself, not a poll

    def _dead_letter(self, events: Sequence[DataMessage], reason: str) -> None:
        """Append the refused events, one JSON line each, and fsync before anything is checkpointed."""
        now_us = time.time_ns() // 1000
        lines = [
            json.dumps(
                {"sink": self.sink.name, "reason": reason, "at_us": now_us, "event": event_to_json(event)}
            )
            for event in events
        ]
        with open(self.dead_letter_path, "a", encoding="utf-8") as file:
            file.write("".join(line + "\n" for line in lines))
            file.flush()
            os.fsync(file.fileno())
        self.stats.dead_lettered += len(events)
        log.error(
            "sink %s: %d event(s) refused (%s): written to %s",
            self.sink.name,
            len(events),
            reason,
            self.dead_letter_path,
        )
