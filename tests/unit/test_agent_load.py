"""Effective load: reserved slots count, so requests inside one load window cannot overbook."""

from __future__ import annotations

from framepool.agent.load import LOAD_WINDOW, CpuMeter, LoadTracker


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
    meter = CpuMeter(window=60)
    meter.sample()
    sum(i * i for i in range(200_000))  # some CPU between the samples
    assert 0.0 <= meter.sample() <= 1.0
