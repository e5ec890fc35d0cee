"""The supervisor's event loop: uvloop through a loop factory, its clock, a monitor of its lag (supervisor).

The supervisor must never block: every room connection, every ring hand-off and every control message
shares this one loop. uvloop roughly halves the loop's own overhead per callback; it is chosen through
`asyncio.Runner(loop_factory=...)` rather than a global event-loop policy, so libraries and tests that
create their own loops are unaffected. `FRAMEPOOL_LOOP=asyncio` falls back to the standard loop (for
debugging with asyncio's debug mode, which uvloop lacks).

The lag monitor is a timer that asks to run every `interval` and measures how late it actually runs:
that delay is what every frame and every control message waits behind. It keeps the worst lag of the
last few seconds for status reports, every lag in a `Distribution` and a count of stalls (lags over
`warn_above`) for metrics, and warns (at most once per `warn_every`) when a lag exceeds that limit.

`Clock` is time as deadlines see it (trio's injected clock): the stop ladder takes one, so its rungs and
deadlines can be tested with a clock the test advances instead of real time. `LoopClock` is the loop's own
monotonic clock, the one asyncio's timeouts use. Signal handling lives in `framepool.signals`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from framepool.distribution import Distribution

log = logging.getLogger(__name__)

T = TypeVar("T")
# Seconds: a healthy loop sits in the first buckets; 0.1 s is a stall (warn_above), 5 s a watchdog's concern.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def loop_factory() -> Any:
    """uvloop's loop factory, or None (asyncio's default) when FRAMEPOOL_LOOP=asyncio."""
    if os.environ.get("FRAMEPOOL_LOOP", "uvloop") == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the supervisor's main coroutine on uvloop (the way every CLI command starts its loop)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


class Clock(Protocol):
    """Monotonic seconds for deadlines; `sleep_until` returns once `now()` has reached `deadline`."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class LoopClock:
    """The running loop's monotonic clock (`loop.time()`), the one asyncio's own timeouts use."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - self.now()))


class LoopLagMonitor:
    """Measures how late a periodic timer fires on the running loop."""

    def __init__(
        self, interval: float = 0.25, warn_above: float = 0.1, warn_every: float = 30.0, window: float = 5.0
    ) -> None:
        self.interval = interval
        self.warn_above = warn_above
        self.warn_every = warn_every
        self.window = window  # seconds `lag` looks back
        self._window = max(1, round(window / interval))
        self._recent: list[float] = []
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0
        self._last_warning = -float("inf")
        self.worst = 0.0  # worst lag ever seen, seconds
        self.lags = Distribution(LAG_BUCKETS)  # every tick's lag
        self.stalls = 0  # ticks later than warn_above

    @property
    def lag(self) -> float:
        """The worst lag of the last few seconds, in seconds."""
        return max(self._recent, default=0.0)

    @property
    def overdue(self) -> float:
        """How late the pending tick is now: a stall that just ended, seen before the tick records it."""
        return max(0.0, time.monotonic() - self._expected) if self._handle is not None else 0.0

    def start(self) -> None:
        self._schedule(asyncio.get_running_loop())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._expected = time.monotonic() + self.interval
        self._handle = loop.call_later(self.interval, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        lag = max(0.0, now - self._expected)
        self._recent.append(lag)
        del self._recent[: -self._window]
        self.worst = max(self.worst, lag)
        self.lags.observe(lag)
        self.stalls += lag > self.warn_above
        if lag > self.warn_above and now - self._last_warning >= self.warn_every:
            self._last_warning = now
            log.warning("supervisor event loop ran %.0f ms late: something blocked it", lag * 1000)
        self._schedule(loop)
