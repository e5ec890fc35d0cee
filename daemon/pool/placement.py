"""Stream placement: least-loaded worker first, load being processing time per second as an EWMA (supervisor).

A worker's load is the CPU time it used per second of wall time, measured between two pongs (each pong
carries the worker's cumulative process CPU time) and smoothed with an exponentially weighted moving
average, so one slow second neither hides a busy worker nor sends every new stream elsewhere. CPU time
rather than the wall time spent in `process`: it counts everything the stream costs the worker (ring
reads, frame views, result encoding), and it is what runs out when the worker is full.

Ties (all workers idle, e.g. many streams attached within one ping interval) go to the worker hosting the
fewest streams, so a burst of attaches spreads instead of piling onto worker 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

# Weight of the newest sample: with 1 s pings, a change shows half its size after about 2 s.
EWMA_ALPHA = 0.3


class LoadEstimate:
    """The EWMA of one worker's CPU seconds per second (0..1 for a worker pinned to one CPU)."""

    def __init__(self, alpha: float = EWMA_ALPHA) -> None:
        self.alpha = alpha
        self.value = 0.0
        self._last: tuple[float, float] | None = None  # (wall clock, cpu seconds) of the previous sample

    def update(self, now: float, cpu_seconds: float) -> float:
        """Fold in a sample taken at monotonic time `now`; returns the new estimate."""
        if self._last is not None:
            wall = now - self._last[0]
            if wall > 0:
                sample = max(0.0, min(1.0, (cpu_seconds - self._last[1]) / wall))
                self.value += self.alpha * (sample - self.value)
        self._last = (now, cpu_seconds)
        return self.value

    def reset(self) -> None:
        """A new worker incarnation: its CPU clock starts again from zero."""
        self._last = None
        self.value = 0.0


class Placeable(Protocol):
    @property
    def load(self) -> float: ...

    @property
    def stream_count(self) -> int: ...


P = TypeVar("P", bound=Placeable)


def least_loaded(candidates: Sequence[P]) -> P | None:
    """The candidate with the lowest load, then the fewest streams; None if there is none."""
    if not candidates:
        return None
    return min(candidates, key=lambda c: (round(c.load, 2), c.stream_count))
