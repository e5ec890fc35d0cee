"""`[[data.aggregate]]`: windowed count/sum/mean/min/max/last/distinct per key (supervisor process).

Time. An event's time is when the supervisor received it (`received_us`, wall clock); `now` is the same clock
(the pipeline's injected `clock`, `time.time` in production), passed to `observe` and to `tick`, which the
intake calls from a timer: no thread, no sleep. Windows are aligned to the epoch: tumbling windows
[k·size, (k+1)·size), hopping windows of `size_s` starting every `hop_s` (an event belongs to up to
size/hop of them), or one global window that never closes (a poll). A window closes once the newest time
seen (an event's or a tick's) passes its end by `lateness_s`; an event whose windows have all closed is
*late*: counted and dropped (one that misses only some of its hopping windows counts `late` and joins the
rest).

Emission. On close (`emit = "close"`, final results) and, with `emit = "every"`, also a snapshot of the
fullest open window every `every_s` (skipped when nothing changed, `only_changed`). Each emission goes to a
room topic, the agent's participant attribute `attribute` (at most one update per
`attribute_min_interval_s`; a newer value replaces a waiting one, and the waiting one goes out at the next
tick once the interval has passed) and/or bridges, as JSON:

    {"aggregate": "poll", "window": {"start": 1700000000.0, "end": 1700000010.0} | null, "final": true,
     "results": {"A": 3, "B": 5}}

`attribute` holds only the results object (`{"A":3,"B":5}`). Without `key`, the one group is named "all".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from framepool.dataflow.config import AggregateConfig, config_error
from framepool.dataflow.envelope import Envelope, as_key, optional_expression, truthy
from framepool.dataflow.intents import Intent, PublishData, RoomView, SetAttributes, ToBridge
from framepool.dataflow.match import Matcher
from framepool.dataflow.windows import NUMERIC_FUNCTIONS, Window, numeric
from framepool.processors.messages import DataMessage

MAX_OPEN_WINDOWS = 1000
# Makes a DataMessage of a result for a bridge: (topic, payload, now) → message with the job's next seq.
Derive = Callable[[str, bytes, float], DataMessage]


def _check(config: AggregateConfig, where: str) -> None:
    def positive(key: str, value: float) -> None:
        if not (value > 0 and math.isfinite(value)):
            raise config_error(where, key, value, "a positive number of seconds")

    if config.window != "global":
        positive("size_s", config.size_s)
    if config.window == "hopping":
        positive("hop_s", config.hop_s)
        if config.hop_s > config.size_s:
            raise config_error(where, "hop_s", config.hop_s, f"at most size_s ({config.size_s})")
    if config.window == "global" and config.emit != "every":
        raise config_error(where, "emit", config.emit, '"every" for a global window (it never closes)')
    if config.emit == "every":
        positive("every_s", config.every_s)
    if config.lateness_s < 0:
        raise config_error(where, "lateness_s", config.lateness_s, "0 or more seconds")
    step = config.hop_s if config.window == "hopping" else config.size_s
    if config.window != "global" and (config.size_s + config.lateness_s) / step > MAX_OPEN_WINDOWS:
        raise config_error(where, "hop_s", step, f"(size_s + lateness_s) / step ≤ {MAX_OPEN_WINDOWS}")
    if config.function != "count" and not config.value:
        raise config_error(where, "value", "", f"an expression: {config.function} needs values")
    if not (config.to_topic or config.attribute or config.to_bridges):
        raise config_error(where, "to_topic", "", "at least one of to_topic, attribute, to_bridges")
    if min(config.max_keys, config.max_senders, config.max_distinct) < 1:
        raise config_error(where, "max_keys", config.max_keys, "limits of 1 or more")


class Aggregate:
    """A compiled `AggregateConfig` and its open windows."""

    def __init__(self, config: AggregateConfig, where: str, derive: Derive) -> None:
        _check(config, where)
        self.config = config
        self.name = "aggregate:" + config.name
        self.counters: Counter[str] = Counter()
        self.matcher = Matcher(config.match)
        self.where = optional_expression(config.where, where, "where")
        self.key = optional_expression(config.key, where, "key")
        self.value = optional_expression(config.value, where, "value")
        self._derive = derive
        self._step = config.hop_s if config.window == "hopping" else config.size_s
        self._windows: dict[float, Window] = {}  # by start, oldest first
        self._closed_upto = -math.inf  # every window ending at or before this has closed
        self._newest = -math.inf  # the newest time seen
        self._last_snapshot = -math.inf
        self._pending_attribute: str | None = None
        self._attribute_sent_at = -math.inf

    def observe(self, envelope: Envelope, room: RoomView, now: float, out: list[Intent]) -> None:
        """Count one message into its windows (and close the windows its time has passed)."""
        if not self.matcher(envelope.message, room):
            return
        self.counters["matched"] += 1
        event_time = envelope.message.received_us / 1e6
        self._advance(max(event_time, now), out)
        extracted = self._extract(envelope)
        if extracted is None:
            return
        key, value = extracted
        windows = self._windows_of(event_time)
        if not windows:
            return
        for window in windows:
            window.add(self.config, key, value, envelope.message.sender, self.counters)
        self.counters["accepted"] += 1

    def tick(self, now: float, out: list[Intent]) -> None:
        """Close what `now` has passed, take the periodic snapshot, send a waiting attribute update."""
        self._advance(now, out)
        config = self.config
        if config.emit == "every" and now - self._last_snapshot >= config.every_s:
            self._last_snapshot = now
            current = next((w for w in self._windows.values() if w.end > now and w.start <= now), None)
            if current is not None and not (
                config.only_changed and current.version == current.snapshot_version
            ):
                current.snapshot_version = current.version
                self.counters["snapshots"] += 1
                self._emit(current, False, now, out)
        self._flush_attribute(now, out, force=False)

    def flush(self, now: float, out: list[Intent]) -> None:
        """End of the job: every open window closes now, the waiting attribute goes out regardless."""
        for window in list(self._windows.values()):
            self._close(window, now, out)
        self._flush_attribute(now, out, force=True)

    def _extract(self, envelope: Envelope) -> tuple[str, Any] | None:
        counters = self.counters
        if self.where is not None:
            keep, failed = self.where.search(envelope)
            if failed or not truthy(keep):
                counters["errors" if failed else "filtered"] += 1
                return None
        key: Any = "all"
        if self.key is not None:
            key, failed = self.key.search(envelope)
            if failed or key is None:
                counters["errors" if failed else "no_key"] += 1
                return None
        value: Any = None
        if self.value is not None:
            value, failed = self.value.search(envelope)
            bad = value is None or (self.config.function in NUMERIC_FUNCTIONS and not numeric(value))
            if failed or bad:
                counters["errors" if failed else "bad_value"] += 1
                return None
        return as_key(key), value

    def _windows_of(self, event_time: float) -> list[Window]:
        """The open windows an event belongs to, created as needed; counts `late` for closed ones."""
        config = self.config
        if config.window == "global":
            window = self._windows.get(0.0)
            if window is None:
                window = self._windows[0.0] = Window(0.0, math.inf)
            return [window]
        chosen, late = [], False
        start = math.floor(event_time / self._step) * self._step
        while start + config.size_s > event_time:
            if start + config.size_s <= self._closed_upto:
                late = True
            else:
                window = self._windows.get(start)
                if window is None:
                    window = self._windows[start] = Window(start, start + config.size_s)
                    self._windows = dict(sorted(self._windows.items()))
                chosen.append(window)
            start -= self._step
        if late:
            self.counters["late"] += 1
        return chosen

    def _advance(self, newest: float, out: list[Intent]) -> None:
        if newest <= self._newest:
            return
        self._newest = newest
        if self.config.window == "global":
            return
        self._closed_upto = max(self._closed_upto, newest - self.config.lateness_s)
        for window in [w for w in self._windows.values() if w.end <= self._closed_upto]:
            self._close(window, newest, out)

    def _close(self, window: Window, now: float, out: list[Intent]) -> None:
        del self._windows[window.start]
        self.counters["windows_closed"] += 1
        if not window.empty():
            self._emit(window, True, now, out)

    def _emit(self, window: Window, final: bool, now: float, out: list[Intent]) -> None:
        config = self.config
        results = window.results(config, self.counters)
        self.counters["emitted"] += 1
        bounds = None if window.end == math.inf else {"start": window.start, "end": window.end}
        document = {"aggregate": config.name, "window": bounds, "final": final, "results": results}
        payload = msgspec.json.encode(document)
        if config.to_topic:
            out.append(
                PublishData(
                    topic=config.to_topic,
                    payload=payload,
                    reliable=config.reliable,
                    destinations=tuple(config.destinations),
                    stage=self.name,
                )
            )
        for sink in config.to_bridges:
            message = self._derive(config.to_topic or self.name, payload, now)
            out.append(ToBridge(sink=sink, message=message, stage=self.name))
        if config.attribute:
            if self._pending_attribute is not None:
                self.counters["attribute_coalesced"] += 1
            self._pending_attribute = msgspec.json.encode(results).decode()
            self._flush_attribute(now, out, force=False)

    def _flush_attribute(self, now: float, out: list[Intent], force: bool) -> None:
        pending = self._pending_attribute
        if pending is None or not (
            force or now - self._attribute_sent_at >= self.config.attribute_min_interval_s
        ):
            return
        self._pending_attribute = None
        self._attribute_sent_at = now
        self.counters["attribute_updates"] += 1
        out.append(SetAttributes(attributes={self.config.attribute: pending}, stage=self.name))
