"""Prometheus metric families from plain figures, written straight as exposition text (supervisor process).

The collectors of `framepool.ops` hand these functions names, help texts and values they read at scrape
time; nothing here holds state. Counter names are given without `_total` (added here, to the family and its
sample, as the text format 0.0.4 wants), histograms come from a `framepool.distribution.Distribution`.

Why not prometheus-client's family objects and `generate_latest`: they validate every name and build an
object per sample on every scrape, which was half the supervisor CPU of a scrape at 32 jobs (1.1 ms per
/metrics at 8 jobs on the README's machine, against a target of 1 ms at 32). The names here are constants
of this package; the text is the same (tests parse it with prometheus-client's parser and check it with
promtool).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple, TypeVar

from framepool.distribution import Distribution

LabelValues = TypeVar("LabelValues", bound=tuple[str, ...])  # one value per label, in the labels' order


class Family(NamedTuple):
    """One metric family as exposition text: its HELP and TYPE lines and every sample line."""

    name: str
    text: str


def counter(
    name: str, documentation: str, labels: Sequence[str], values: Mapping[LabelValues, float]
) -> Family:
    return _family(f"{name}_total", "counter", documentation, labels, values)


def gauge(
    name: str, documentation: str, labels: Sequence[str], values: Mapping[LabelValues, float]
) -> Family:
    return _family(name, "gauge", documentation, labels, values)


def histogram(name: str, documentation: str, distribution: Distribution) -> Family:
    lines = [_header(name, "histogram", documentation)]
    count = 0.0
    for bound, count in distribution.cumulative():
        le = "+Inf" if bound == math.inf else repr(float(bound))
        lines.append(f'{name}_bucket{{le="{le}"}} {_number(count)}\n')
    lines.append(f"{name}_count {_number(count)}\n{name}_sum {_number(distribution.sum)}\n")
    return Family(name, "".join(lines))


def _family(
    name: str, kind: str, documentation: str, labels: Sequence[str], values: Mapping[LabelValues, float]
) -> Family:
    lines = [_header(name, kind, documentation)]
    for label_values, value in sorted(values.items()):
        if labels:
            pairs = ",".join(f'{label}="{_escape(v)}"' for label, v in zip(labels, label_values, strict=True))
            lines.append(f"{name}{{{pairs}}} {_number(value)}\n")
        else:
            lines.append(f"{name} {_number(value)}\n")
    return Family(name, "".join(lines))


def _header(name: str, kind: str, documentation: str) -> str:
    help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return "NaN" if math.isnan(value) else repr(float(value))


def render(families: Sequence[Family]) -> bytes:
    return "".join(family.text for family in families).encode()
