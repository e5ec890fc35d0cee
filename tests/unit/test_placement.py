"""Least-loaded placement and the load EWMA."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from framepool.pool.placement import LoadEstimate, least_loaded


@dataclass
class FakeWorker:
    name: str
    load: float
    stream_count: int


def test_least_loaded_prefers_low_load_then_few_streams() -> None:
    a, b, c = FakeWorker("a", 0.5, 1), FakeWorker("b", 0.1, 9), FakeWorker("c", 0.1, 2)
    assert least_loaded([a, b, c]) is c
    assert least_loaded([a]) is a
    assert least_loaded([]) is None


def test_idle_workers_split_a_burst_of_attaches_by_stream_count() -> None:
    workers = [FakeWorker(str(i), 0.0, 0) for i in range(3)]
    for _ in range(9):
        least_loaded(workers).stream_count += 1  # type: ignore[union-attr]
    assert [w.stream_count for w in workers] == [3, 3, 3]


def test_load_estimate_is_cpu_seconds_per_second_smoothed() -> None:
    est = LoadEstimate(alpha=0.5)
    assert est.update(0.0, 0.0) == 0.0  # first sample: no interval yet
    assert est.update(1.0, 1.0) == pytest.approx(0.5)  # a fully busy second, half weight
    assert est.update(2.0, 2.0) == pytest.approx(0.75)
    assert est.update(3.0, 2.0) == pytest.approx(0.375)  # an idle second
    assert est.update(3.0, 5.0) == pytest.approx(0.375)  # no wall time elapsed: ignored
    est.reset()
    assert est.value == 0.0 and est.update(10.0, 100.0) == 0.0
