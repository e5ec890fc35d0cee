"""A token bucket for whatever a worker or a participant makes the supervisor do (supervisor process).

Results a stream may send to its room (`framepool.agent.outbox`) and control messages a worker may send
(`framepool.pool.process`) are both limited by the supervisor with one of these: the sender decides how much
it tries, the bucket how much gets through, and every refusal is counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`rate` events per second, bursts up to `2 × rate`; `allow` says whether one more may pass."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = 2 * rate
        self.dropped = 0
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.dropped += 1
        return False
