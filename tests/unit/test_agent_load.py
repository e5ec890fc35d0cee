"""Effective load: reserved slots count, so requests inside one load window cannot overbook."""

from __future__ import annotations

import os
import time

from framepool.agent.load import LOAD_WINDOW, MIN_SPAN, CpuMeter, LoadTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_two_requests_in_one_window_cannot_both_take_the_last_capacity() -> None:
    clock = Clock()
    measured = [0.70]
    tracker = LoadTracker(lambda: measured[0], threshold=0.75, clock=clock)
    tracker.running = 5  # 0.14 per job
    assert tracker.try_reserve("a")
    assert not tracker.try_reserve("b")  # 0.70 + 1 x 0.14 >= 0.75
    tracker.release("a")
    assert tracker.try_reserve("b")


def test_a_started_job_keeps_its_reservation_for_one_window() -> None:
    clock = Clock()
    tracker = LoadTracker(lambda: 0.0, threshold=0.5, max_jobs=4, clock=clock)  # 0.25 per job by count
    assert tracker.try_reserve("a")
    tracker.started("a")
    assert tracker.reserved() == 1
    clock.now += LOAD_WINDOW
    assert tracker.reserved() == 0
    tracker.ended("a")
    assert tracker.running == 0


def test_max_jobs_counts_running_and_pending() -> None:
    tracker = LoadTracker(lambda: 0.0, threshold=1.0, max_jobs=2)
    assert tracker.try_reserve("a")
    tracker.started("a")
    assert tracker.try_reserve("b")
    assert tracker.full()
    assert not tracker.try_reserve("c")


def test_draining_is_full() -> None:
    assert LoadTracker(lambda: 0.0, threshold=0.9).full(draining=True)


def test_cpu_meter_reports_a_fraction_of_one_core() -> None:
    """Real CPU time over an injected clock: the span is exact, so the fraction is known to within the CPU
    this process spends outside the busy loop (a few milliseconds)."""
    clock = Clock()
    meter = CpuMeter(window=LOAD_WINDOW, clock=clock)
    assert meter.sample() == 0.0  # one sample: no span yet
    burned = _burn_cpu(0.25)
    clock.now += MIN_SPAN / 2
    assert meter.sample() == 0.0  # under the minimum span: a burst reads as nothing, not as 100 %
    clock.now += MIN_SPAN / 2
    busy = meter.sample()  # `burned` seconds of CPU over MIN_SPAN seconds
    # The meter reads the kernel's CPU time, in clock ticks (10 ms): up to a tick below process_time's figure.
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert (burned - tick) / MIN_SPAN - 0.01 <= busy <= min(1.0, (burned + 0.1) / MIN_SPAN), (busy, burned)
    assert busy >= 0.2  # FULL can be decided on it: the old test could only ever see 0.0
    clock.now += 100 * LOAD_WINDOW  # idle for many windows: the busy samples fall out of the window
    meter.sample()
    clock.now += MIN_SPAN
    assert meter.sample() < 0.01


def _burn_cpu(seconds: float) -> float:
    """Spin until this process has used `seconds` of CPU time; the CPU time actually used."""
    start = time.process_time()
    while time.process_time() - start < seconds:
        sum(i * i for i in range(10_000))
    return time.process_time() - start
