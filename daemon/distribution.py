"""Bucketed counts of a measured quantity, kept where it is measured and read at scrape time (supervisor).

A `Distribution` is the state of a Prometheus histogram without the client library: fixed upper bounds,
a count per bucket, the sum. The loop-lag monitor and the worker pool record into one each (a bisect and
two additions, nothing allocated), and `framepool.ops.metrics` turns them into histogram families when
scraped. Keeping the library out of the measuring code keeps the hot paths free of its locks and lets the
figures exist whether or not anyone scrapes.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


class Distribution:
    """Observations counted per bucket of `bounds` (upper bounds, seconds or any unit, increasing)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"histogram bounds must be distinct and increasing: {bounds!r}")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last bucket: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        """Count `value` `times` times (a mean over `times` events counts as that many observations)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.sum += value * times

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) per bucket, +Inf last: Prometheus's `le` buckets."""
        total, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets
