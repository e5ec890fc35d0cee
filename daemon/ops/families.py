"""Building Prometheus metric families from plain figures (supervisor process).

The collectors of `framepool.ops` hand these functions names, help texts and values they read at scrape
time; nothing here holds state. Counter names are given without `_total` (the client library adds it to
the sample), histograms come from a `framepool.distribution.Distribution`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from framepool.distribution import Distribution

LabelValues = TypeVar("LabelValues", bound=tuple[str, ...])  # one value per label, in the labels' order


def counter(
    name: str, documentation: str, labels: Sequence[str], values: Mapping[LabelValues, float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for label_values, value in sorted(values.items()):
        family.add_metric(label_values, value)
    return family


def gauge(
    name: str, documentation: str, labels: Sequence[str], values: Mapping[LabelValues, float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in sorted(values.items()):
        family.add_metric(label_values, value)
    return family


def histogram(name: str, documentation: str, distribution: Distribution) -> HistogramMetricFamily:
    buckets = [(_bound(bound), count) for bound, count in distribution.cumulative()]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=distribution.sum)


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
