"""The daemon's load as LiveKit sees it, and the slots reserved for jobs not yet visible in it (supervisor
process).

The default load is max(supervisor CPU, busiest worker's processing-time fraction): the supervisor holds
every room connection and is one event loop, so its CPU (as a fraction of one core) saturates first for
many light jobs, while one busy worker saturates first for heavy processors. Both are averaged over a
moving window (`LOAD_WINDOW` seconds of CPU-time samples; the pool keeps its own EWMA).

A job accepted now shows up in the measured load only after it has joined its room and frames flow, so a
burst of requests inside one window would all see the old load and overbook. Every accepted request
therefore holds a *reservation* from the moment it answers "available" until one window after its job
started (or until the assignment times out), and reservations count in the effective load at the
estimated cost of one job. Two requests inside one window thus cannot both take the last capacity.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

LOAD_WINDOW = 5.0
MIN_SPAN = 1.0
# The smallest cost one job is assumed to add: keeps reservations meaningful while nothing runs yet.
MIN_JOB_COST = 0.02


class CpuMeter:
    """This process's CPU time as a fraction of one core over the last `window` seconds."""

    def __init__(self, window: float = LOAD_WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self._process = psutil.Process()
        self._window = window
        self._clock = clock
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self._last = 0.0

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def sample(self) -> float:
        """The CPU fraction over the window; until a minimum span is covered, the last figure (0 at first)."""
        now, cpu = self._clock(), self._cpu_seconds()
        self._samples.append((now, cpu))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()
        first_t, first_cpu = self._samples[0]
        # Two samples a few milliseconds apart say nothing about load (a burst of one callback reads as 100
        # %).
        if now - first_t >= MIN_SPAN:
            self._last = min(1.0, max(0.0, (cpu - first_cpu) / (now - first_t)))
        return self._last


@dataclass
class Reservation:
    job_id: str
    expires_at: float  # monotonic; inf until the job starts


class LoadTracker:
    """Effective load = measured load + reserved slots x estimated cost of one job; decides FULL."""

    def __init__(
        self,
        measure: Callable[[], float],
        threshold: float,
        max_jobs: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._measure = measure
        self.threshold = threshold
        self.max_jobs = max_jobs
        self._clock = clock
        self._reservations: dict[str, Reservation] = {}
        self.running = 0
        self.measured = 0.0

    def refresh(self) -> float:
        """Take a new measurement (called at each status report and availability request)."""
        self.measured = min(1.0, max(0.0, float(self._measure())))
        return self.measured

    def job_cost(self) -> float:
        per_job = self.measured / self.running if self.running else 0.0
        by_count = 1.0 / self.max_jobs if self.max_jobs else 0.0
        return max(per_job, by_count, MIN_JOB_COST)

    def reserved(self) -> int:
        now = self._clock()
        for job_id in [r.job_id for r in self._reservations.values() if r.expires_at <= now]:
            del self._reservations[job_id]
        return len(self._reservations)

    def effective(self) -> float:
        return min(1.0, self.measured + self.reserved() * self.job_cost())

    def full(self, draining: bool = False) -> bool:
        if draining or self.effective() >= self.threshold:
            return True
        pending = sum(1 for r in self._reservations.values() if r.expires_at == float("inf"))
        return bool(self.max_jobs) and self.running + pending >= self.max_jobs

    def try_reserve(self, job_id: str) -> bool:
        """Reserve a slot for an offered job unless that would overbook."""
        self.refresh()
        if self.full():
            return False
        self._reservations[job_id] = Reservation(job_id, float("inf"))
        return True

    def started(self, job_id: str) -> None:
        """The job runs: it counts as running; its reservation fades after one window."""
        self.running += 1
        reservation = self._reservations.get(job_id)
        if reservation is not None:
            reservation.expires_at = self._clock() + LOAD_WINDOW

    def release(self, job_id: str) -> None:
        """An accepted job never came (assignment timeout)."""
        self._reservations.pop(job_id, None)

    def ended(self, job_id: str) -> None:
        self.running = max(0, self.running - 1)
        self._reservations.pop(job_id, None)
