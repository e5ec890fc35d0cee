"""The time scales of the `loudness` processor (worker process): momentary and short-term windows over
10 ms hops, and the gated statistics behind integrated loudness (BS.1770-4) and loudness range (EBU
Tech 3342), kept in bounded memory.

Every window and gating block starts on a 10 ms hop boundary counted from the first sample, so one
sum of squares per hop is all the K-weighted signal is reduced to: momentary (400 ms) is the sum of the
last 40 hops, short-term (3 s) of the last 300, a gating block (400 ms, 75 % overlap) is the momentary
window at every 10th hop, and the short-term values that loudness range takes (10 Hz, as Tech 3342
asks) are the short-term window at every 10th hop. The maximum momentary and short-term loudness are
taken over every hop, so a 400 ms or 3 s burst starting on any 10 ms boundary is measured whole (EBU
Tech 3341 cases 10 and 13 shift theirs in 150 ms and 20 ms steps).

Integrated loudness and LRA need every block since the start, re-gated at each reading. Rather than a
list growing 10 values a second forever, each keeps a histogram of 0.01 LU bins from -70 to +10 LUFS
holding, per bin, the number of values and the exact sum of their energies: the gated means are then
exact except for the blocks within 0.01 LU of the relative threshold (taken in or out as a whole bin),
and a percentile is a bin centre (±0.005 LU). Memory: 96 KB per histogram, whatever the duration.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

HOPS_PER_SECOND = 100
MOMENTARY_HOPS = 40  # 400 ms
SHORT_TERM_HOPS = 300  # 3 s
BLOCK_STEP_HOPS = 10  # gating blocks and LRA values every 100 ms
ABSOLUTE_GATE_LUFS = -70.0
INTEGRATED_RELATIVE_GATE_LU = -10.0
RANGE_RELATIVE_GATE_LU = -20.0
RANGE_PERCENTILES = (0.10, 0.95)
BIN_LU = 0.01
TOP_LUFS = 10.0  # above any int16 programme (a stereo full-scale tone at Nyquist is +6.3 LUFS)


def loudness(energy: float) -> float:
    """BS.1770 loudness (LUFS) of a channel-weighted mean square; -inf for silence."""
    return -0.691 + 10.0 * math.log10(energy) if energy > 0.0 else -math.inf


class GatedHistogram:
    """Values (as energies) above the absolute gate, binned by loudness with exact per-bin energy sums."""

    def __init__(self) -> None:
        self._bins = round((TOP_LUFS - ABSOLUTE_GATE_LUFS) / BIN_LU)
        self._counts = np.zeros(self._bins, np.int32)  # 2^31 blocks: 6.8 years at 10 a second
        self._energies = np.zeros(self._bins)
        self.count = 0
        self._energy = 0.0

    def add(self, energy: float) -> None:
        """Add one value; the caller has applied the absolute gate."""
        index = min(self._bins - 1, int((loudness(energy) - ABSOLUTE_GATE_LUFS) / BIN_LU))
        self._counts[index] += 1
        self._energies[index] += energy
        self.count += 1
        self._energy += energy

    def relative_gate(self, relative_lu: float) -> float:
        """The relative threshold (LUFS): the mean of every value, `relative_lu` below."""
        return loudness(self._energy / self.count) + relative_lu

    def first_bin_above(self, threshold: float) -> int:
        """The first bin whose centre is above `threshold`."""
        centre_offset = (threshold - ABSOLUTE_GATE_LUFS) / BIN_LU - 0.5
        return max(0, min(self._bins, math.floor(centre_offset) + 1))

    def gated_mean(self, threshold: float) -> float:
        """The loudness of the mean energy of the values above `threshold`."""
        start = self.first_bin_above(threshold)
        count = int(self._counts[start:].sum())
        return loudness(float(self._energies[start:].sum()) / count) if count else -math.inf

    def percentiles(self, threshold: float, fractions: tuple[float, ...]) -> list[float]:
        """Nearest-rank percentiles of the values above `threshold`, as Tech 3342's reference code takes
        them (sorted[round((n - 1) p)]), each the centre of its bin."""
        start = self.first_bin_above(threshold)
        cumulative = np.cumsum(self._counts[start:])
        count = int(cumulative[-1]) if cumulative.size else 0
        if count == 0:
            return []
        ranks = [math.floor((count - 1) * fraction + 0.5) for fraction in fractions]
        bins = np.searchsorted(cumulative, np.array(ranks) + 1) + start
        return [ABSOLUTE_GATE_LUFS + (int(index) + 0.5) * BIN_LU for index in bins]


class LoudnessTimeScales:
    """Momentary, short-term, their maxima, integrated loudness and loudness range from hop energies."""

    def __init__(self) -> None:
        self.hops = 0  # hops measured since the start
        self._recent = np.zeros(0)  # the last SHORT_TERM_HOPS - 1 hop energies (mean squares)
        self.momentary = math.nan  # mean squares at the last hop; NaN until the window is full
        self.short_term = math.nan
        self.max_momentary = math.nan
        self.max_short_term = math.nan
        self.blocks = GatedHistogram()  # gating blocks, for integrated loudness
        self.short_terms = GatedHistogram()  # short-term values at 10 Hz, for loudness range

    def add(self, hop_energies: Floats) -> None:
        """Add the mean squares of consecutive hops."""
        series = np.concatenate([self._recent, hop_energies])
        first = self.hops + 1  # the hop count at the first new hop
        self.hops += hop_energies.size
        self._recent = series[-(SHORT_TERM_HOPS - 1) :]
        momentary = _window_means(series, MOMENTARY_HOPS, hop_energies.size)
        short_term = _window_means(series, SHORT_TERM_HOPS, hop_energies.size)
        counts = np.arange(first, self.hops + 1)
        self.momentary, self.short_term = float(momentary[-1]), float(short_term[-1])
        self.max_momentary = _nan_max(self.max_momentary, momentary)
        self.max_short_term = _nan_max(self.max_short_term, short_term)
        on_step = counts % BLOCK_STEP_HOPS == 0
        for energy in momentary[on_step & ~np.isnan(momentary)]:
            if loudness(float(energy)) > ABSOLUTE_GATE_LUFS:  # BS.1770: l_j > Γa
                self.blocks.add(float(energy))
        for energy in short_term[on_step & ~np.isnan(short_term)]:
            if loudness(float(energy)) >= ABSOLUTE_GATE_LUFS:  # Tech 3342: >= ABS_THRES
                self.short_terms.add(float(energy))

    def integrated(self) -> tuple[float, float] | None:
        """(integrated loudness, relative threshold) in LUFS; None until a block passes the gates."""
        if not self.blocks.count:
            return None
        threshold = self.blocks.relative_gate(INTEGRATED_RELATIVE_GATE_LU)
        return self.blocks.gated_mean(threshold), threshold

    def loudness_range(self) -> tuple[float, float, float] | None:
        """(LRA in LU, low and high percentile in LUFS); None until a short-term value passes the gates."""
        if not self.short_terms.count:
            return None
        threshold = self.short_terms.relative_gate(RANGE_RELATIVE_GATE_LU)
        # Tech 3342 keeps values at or above the threshold; bins whose centre is above it, here.
        values = self.short_terms.percentiles(threshold, RANGE_PERCENTILES)
        if not values:
            return None
        low, high = values
        return high - low, low, high


def _window_means(series: Floats, width: int, newest: int) -> Floats:
    """Mean of the `width` hops ending at each of the `newest` last hops of `series`; NaN where fewer."""
    means = np.full(newest, np.nan)
    if series.size >= width:
        sums = np.lib.stride_tricks.sliding_window_view(series, width).sum(axis=1)[-newest:]
        means[newest - sums.size :] = sums / width
    return means


def _nan_max(current: float, values: Floats) -> float:
    """The larger of `current` and the largest value in `values`, ignoring NaN in both."""
    candidates = values[~np.isnan(values)]
    if not candidates.size:
        return current
    best = float(candidates.max())
    return best if math.isnan(current) else max(current, best)
