"""The signal paths of the `loudness` processor (worker process): BS.1770 K-weighting and the Annex 2
true-peak interpolator, both vectorised with numpy over whole frames.

K-weighting is a recursive (IIR) filter, and numpy has no `lfilter`; a Python loop over samples costs
~1 µs a sample, 100 times the budget. So the two biquads run as one 4-state linear system over blocks of
`L` samples (L ≈ 48): within a block, the output is the zero-state response (one matrix product with the
L×L lower-triangular Toeplitz matrix of the impulse response) plus the free response of the state the
block started in (4 columns). The block-start states follow the recursion z[j+1] = A^L z[j] + G x[j],
solved for all blocks of a frame at once by a prefix scan in log2(blocks) steps. This is exact up to
float64 rounding (checked against a direct per-sample recursion in the tests), and costs ~L + 12
multiply-adds a sample, in BLAS. Rejected: an FIR truncation of the impulse response (the 38 Hz
high-pass rings for thousands of samples), and a frequency-domain filter (needs overlap-save state and
is not exact either).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

Coefficients = tuple[tuple[float, float, float], tuple[float, float, float]]  # (b0, b1, b2), (1, a1, a2)
Floats = npt.NDArray[np.float64]

# ITU-R BS.1770-4 Tables 1 and 2: the two stages at 48 kHz, used as published.
SHELF_48K: Coefficients = (
    (1.53512485958697, -2.69169618940638, 1.19839281085285),
    (1.0, -1.69065929318241, 0.73248077421585),
)
HIGH_PASS_48K: Coefficients = ((1.0, -2.0, 1.0), (1.0, -1.99004745483398, 0.99007225036621))

# ITU-R BS.1770-4 Annex 2: the 48-tap, 4-phase interpolating FIR; row p gives output phase p.
TRUE_PEAK_PHASES = np.array(
    [
        [0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000, -0.0594482421875,
         0.1373291015625, 0.9721679687500, -0.1022949218750, 0.0476074218750, -0.0266113281250,
         0.0148925781250, -0.0083007812500],
        [-0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250, -0.1665039062500,
         0.4650878906250, 0.7797851562500, -0.2003173828125, 0.1015625000000, -0.0582275390625,
         0.0330810546875, -0.0189208984375],
        [-0.0189208984375, 0.0330810546875, -0.0582275390625, 0.1015625000000, -0.2003173828125,
         0.7797851562500, 0.4650878906250, -0.1665039062500, 0.0891113281250, -0.0517578125000,
         0.0292968750000, -0.0291748046875],
        [-0.0083007812500, 0.0148925781250, -0.0266113281250, 0.0476074218750, -0.1022949218750,
         0.9721679687500, 0.1373291015625, -0.0594482421875, 0.0332031250000, -0.0196533203125,
         0.0109863281250, 0.0017089843750],
    ]
)  # fmt: skip
TAPS = TRUE_PEAK_PHASES.shape[1]
_OLDEST_FIRST_PHASES = np.ascontiguousarray(TRUE_PEAK_PHASES[:, ::-1].T)  # (taps, phases)
# No output of the interpolator exceeds the input's peak times this: a frame whose sample peak times it
# is below the true peak found so far cannot raise it, and is not interpolated.
TRUE_PEAK_GAIN_BOUND = float(np.abs(TRUE_PEAK_PHASES).sum(axis=1).max())


def k_weighting(sample_rate: int) -> tuple[Coefficients, Coefficients]:
    """The shelf and high-pass stages at `sample_rate`: as published at 48 kHz; elsewhere derived from
    the analogue prototypes' f0, gain and Q through the bilinear transform, as libebur128 and FFmpeg's
    ebur128 filter derive them (so the three agree at every rate)."""
    if sample_rate == 48000:
        return SHELF_48K, HIGH_PASS_48K
    return derived_k_weighting(sample_rate)


def derived_k_weighting(sample_rate: int) -> tuple[Coefficients, Coefficients]:
    """The K-weighting stages by the bilinear transform (libebur128's constants)."""
    k = math.tan(math.pi * 1681.974450955533 / sample_rate)
    q = 0.7071752369554196
    vh = 10.0 ** (3.999843853973347 / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = (
        ((vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0),
        (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0),
    )
    k = math.tan(math.pi * 38.13547087602444 / sample_rate)
    q = 0.5003270373238773
    a0 = 1.0 + k / q + k * k
    high_pass = ((1.0, -2.0, 1.0), (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0))
    return shelf, high_pass


def _biquad_state_space(stage: Coefficients) -> tuple[Floats, Floats, Floats, float]:
    """(A, B, C, D) of one biquad in transposed direct form II."""
    (b0, b1, b2), (_, a1, a2) = stage
    a = np.array([[-a1, 1.0], [-a2, 0.0]])
    return a, np.array([b1 - a1 * b0, b2 - a2 * b0]), np.array([1.0, 0.0]), b0


def cascade_state_space(first: Coefficients, second: Coefficients) -> tuple[Floats, Floats, Floats, float]:
    """(A, B, C, D) of `first` then `second`; block-triangular, so each stage keeps its own conditioning."""
    a1, b1, c1, d1 = _biquad_state_space(first)
    a2, b2, c2, d2 = _biquad_state_space(second)
    a = np.zeros((4, 4))
    a[:2, :2], a[2:, :2], a[2:, 2:] = a1, np.outer(b2, c1), a2
    b = np.concatenate([b1, b2 * d1])
    c = np.concatenate([d2 * c1, c2])
    return a, b, c, d1 * d2


def block_length(hop: int) -> int:
    """The filter's block length: the divisor of `hop` nearest 48 samples (the Toeplitz product costs L
    multiply-adds a sample, the scan a few operations per block: 48 balances them)."""
    divisors = [d for d in range(1, hop + 1) if hop % d == 0]
    return min(divisors, key=lambda d: (abs(d - 48), d))


class BlockFilter:
    """The K-weighting of one stream, all channels at once, over any multiple of `length` samples."""

    def __init__(self, sample_rate: int, length: int, channels: int) -> None:
        self.length = length
        self._toeplitz, self._free, self._gather, self._powers = _block_matrices(sample_rate, length)
        self._state = np.zeros((channels, 4))

    def __call__(self, x: Floats) -> Floats:
        """`x` (channels, n), n a multiple of the block length: the K-weighted signal, same shape."""
        channels, n = x.shape
        blocks = x.reshape(channels, n // self.length, self.length)
        forced = blocks @ self._toeplitz.T  # zero-state response of each block
        starts = self._block_starts(blocks @ self._gather.T)  # (channels, blocks, 4)
        out = forced + starts @ self._free.T
        return out.reshape(channels, n)

    def _block_starts(self, gathered: Floats) -> Floats:
        """The state each block starts in, from the zero-state end states `gathered` (channels, blocks, 4):
        an inclusive prefix scan of z -> A^L z + g (the carried-in state folded into the first block)
        gives each block's end state, which is the next one's start."""
        scan = gathered.copy()
        scan[:, 0] += self._state @ self._powers[0].T
        count = scan.shape[1]
        step, level = 1, 0
        while step < count:
            # After this step scan[j] holds the sum over i in (j - 2 step, j] of (A^L)^(j-i) g[i].
            scan[:, step:] += scan[:, :-step] @ self._powers[level].T
            step, level = step * 2, level + 1
        starts = np.empty_like(scan)
        starts[:, 0] = self._state
        starts[:, 1:] = scan[:, :-1]
        self._state = scan[:, -1].copy()
        return starts


@lru_cache(maxsize=8)
def _block_matrices(sample_rate: int, length: int) -> tuple[Floats, Floats, Floats, Floats]:
    """For blocks of `length`: the Toeplitz matrix of the impulse response, the free response of each
    state (length, 4), the map from a block's input to its zero-state end state (4, length), and
    A^(length · 2^k) for the scan. Shared by every stream at this rate (read-only)."""
    a, b, c, d = cascade_state_space(*k_weighting(sample_rate))
    a_powers = _power_series(a, length + 1)  # A^0 .. A^length
    impulse = np.concatenate([[d], [c @ a_powers[m] @ b for m in range(length - 1)]])
    index = np.arange(length)
    lags = index[:, None] - index[None, :]
    toeplitz = np.where(lags >= 0, impulse[np.clip(lags, 0, None)], 0.0)
    free = np.stack([c @ a_powers[m] for m in range(length)])
    gather = np.stack([a_powers[length - 1 - k] @ b for k in range(length)], axis=1)
    doublings = [a_powers[length]]
    for _ in range(24):  # scans of up to 2^24 blocks
        doublings.append(doublings[-1] @ doublings[-1])
    return toeplitz, free, gather, np.stack(doublings)


def _power_series(matrix: Floats, count: int) -> Floats:
    """matrix^0 .. matrix^(count-1), stacked."""
    powers = np.empty((count, *matrix.shape))
    powers[0] = np.eye(matrix.shape[0])
    for k in range(1, count):
        powers[k] = powers[k - 1] @ matrix
    return powers


class TruePeakMeter:
    """The BS.1770-4 Annex 2 true peak per channel: 4× oversampling through the published polyphase FIR,
    absolute value, maximum. In floating point the 12.04 dB headroom step of the annex is not needed."""

    def __init__(self, channels: int) -> None:
        self._history = np.zeros((channels, TAPS - 1))
        self.peaks = np.zeros(channels)  # linear, 1.0 = full scale

    def __call__(self, x: Floats) -> None:
        """Feed `x` (channels, n) and raise the per-channel peaks."""
        extended = np.concatenate([self._history, x], axis=1)
        self._history = extended[:, -(TAPS - 1) :]
        sample_peaks = np.abs(x).max(axis=1)
        if np.all(sample_peaks * TRUE_PEAK_GAIN_BOUND <= self.peaks):
            return
        windows = np.lib.stride_tricks.sliding_window_view(extended, TAPS, axis=1)  # oldest sample first
        interpolated = windows @ _OLDEST_FIRST_PHASES  # (channels, n, 4)
        self.peaks = np.maximum(self.peaks, np.abs(interpolated).max(axis=(1, 2)))
        # The interpolator's phase 0 is not the identity; a meter never reads below the sample peak.
        self.peaks = np.maximum(self.peaks, sample_peaks)
