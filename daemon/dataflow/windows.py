"""The state of one aggregation window: groups and their accumulators, bounded (supervisor process).

Two ways to fill a window. Streaming (the default): each event updates its group's accumulator in O(1).
Per sender (`per_sender`, for votes): each sender's last (group, value) replaces its previous one, so a
participant who changes their vote moves from one group to the other; the accumulators are computed when
the window is emitted, in O(senders). Both are bounded (`max_keys` groups, `max_senders` senders,
`max_distinct` values per group); what a full window refuses is counted, never stored.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import msgspec

from framepool.dataflow.config import AggregateConfig

NUMERIC_FUNCTIONS = frozenset({"sum", "mean", "min", "max"})


def numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Accumulator:
    """count / sum / mean / min / max / last / distinct of one group, in O(1) per value."""

    __slots__ = ("count", "distinct", "high", "last", "low", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.low: Any = None
        self.high: Any = None
        self.last: Any = None
        self.distinct: set[bytes] | None = None  # values as JSON, so 5 and "5" differ

    def add(self, function: str, value: Any, max_distinct: int) -> bool:
        """Take one value; False when a distinct set is full (the value is counted but not remembered)."""
        self.count += 1
        self.last = value
        if function in NUMERIC_FUNCTIONS:
            self.total += value
            self.low = value if self.low is None else min(self.low, value)
            self.high = value if self.high is None else max(self.high, value)
        elif function == "distinct":
            seen = self.distinct if self.distinct is not None else set()
            self.distinct = seen
            key = msgspec.json.encode(value)
            if key not in seen:
                if len(seen) >= max_distinct:
                    return False
                seen.add(key)
        return True

    def result(self, function: str) -> Any:
        if function == "count":
            return self.count
        if function == "sum":
            return self.total
        if function == "mean":
            return self.total / self.count if self.count else None
        if function == "min":
            return self.low
        if function == "max":
            return self.high
        if function == "distinct":
            return len(self.distinct or ())
        return self.last


class Window:
    """One window [start, end) of one aggregate (end = inf for the global window)."""

    __slots__ = ("end", "groups", "snapshot_version", "start", "version", "votes")

    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end
        self.groups: dict[str, Accumulator] = {}
        self.votes: dict[str, tuple[str, Any]] = {}  # sender → (group, value), per_sender only
        self.version = 0  # changes with every accepted event
        self.snapshot_version = 0  # the version last emitted as a snapshot

    def add(self, config: AggregateConfig, key: str, value: Any, sender: str, counters: Counter[str]) -> None:
        if config.per_sender:
            if sender not in self.votes and len(self.votes) >= config.max_senders:
                counters["senders_refused"] += 1
                return
            if self.votes.get(sender) == (key, value):
                return  # the same vote again changes nothing
            self.votes[sender] = (key, value)
        else:
            group = self.groups.get(key)
            if group is None:
                if len(self.groups) >= config.max_keys:
                    counters["keys_refused"] += 1
                    return
                group = self.groups[key] = Accumulator()
            if not group.add(config.function, value, config.max_distinct):
                counters["distinct_capped"] += 1
        self.version += 1

    def results(self, config: AggregateConfig, counters: Counter[str]) -> dict[str, Any]:
        """{group: the function's result}, groups in first-seen order."""
        groups = self.groups
        if config.per_sender:
            groups = {}
            for key, value in self.votes.values():
                group = groups.get(key)
                if group is None:
                    if len(groups) >= config.max_keys:
                        counters["keys_refused"] += 1
                        continue
                    group = groups[key] = Accumulator()
                group.add(config.function, value, config.max_distinct)
        return {key: group.result(config.function) for key, group in groups.items()}

    def empty(self) -> bool:
        return not self.groups and not self.votes
