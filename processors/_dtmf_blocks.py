"""DTMF block analysis for the `dtmf` processor (worker process): a Goertzel filter bank over short
overlapping blocks and the per-block screening of candidate digits.

Each block is `BLOCK` samples (13.25 ms at 8 kHz) and a new one starts every `HOP` samples (5 ms). At
106 samples the bins are 75.5 Hz apart: neighbouring row frequencies (73 to 89 Hz apart) fall near each
other's first null, so the strongest bin of a group stands out clearly, and a 40 ms tone still fills
five or six blocks completely while a 23 ms one fills at most two. The 5 ms hop is what times the edges
of a digit (see framepool.processors._dtmf_segments) and keeps the block-to-block phase step of a tone
within ±π for offsets up to ±100 Hz, which is how the frequency is measured.

Goertzel's recursion computes one DFT term per frequency; over many blocks the same terms are one matrix
product of the blocks (a strided view, no copy) with a precomputed table of complex exponentials, which
numpy does far faster than a Python loop per sample. The bank holds the 8 DTMF frequencies with a rectangular
window for screening and with a Hann window for measuring, and the tones' harmonics (rectangular) for
the talk-off checks: the rectangular window separates neighbouring rows best, but the
other group's tone leaks into it at -21 dB, a ±9 % ripple on a tone's magnitude and phase from block to
block; Hann's sidelobes are 40 dB down there, so levels, edges and phase steps are measured on those.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
BLOCK = 106
HOP = 40
LOW_HZ = (697.0, 770.0, 852.0, 941.0)
HIGH_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
TONE_HZ = np.array(LOW_HZ + HIGH_HZ)
MEASURE = 8  # bins MEASURE + i: tone i through the Hann window
# The harmonics checked: the second of every tone, the third of the low ones (the high group's are above
# 3.6 kHz). A tone 2.5 % off puts its third harmonic 64 Hz from the nominal one, near the bin's null, so
# each harmonic has bins 2 % below, at and 2 % above its nominal frequency: the nearest is then at most
# 1 % of the harmonic (26 Hz, -1.6 dB) away.
HARMONIC_HZ = np.concatenate((2.0 * TONE_HZ, 3.0 * TONE_HZ[:4]))
HARMONIC_STEPS = np.array([-0.02, 0.0, 0.02])
HARMONICS = 16  # bins HARMONICS + len(HARMONIC_HZ) * step + h: harmonic h at step `step`
BANK_HZ = np.concatenate((TONE_HZ, TONE_HZ, *(HARMONIC_HZ * (1 + step) for step in HARMONIC_STEPS)))
KEYS = "123A456B789C*0#D"  # row (low group) major: KEYS[4 * row + column]
FULL_SCALE = 32768.0

HANN = np.hanning(BLOCK + 2)[1:-1]  # no zero end points: every sample of the block counts
_WEIGHTS = np.ones((BLOCK, BANK_HZ.size))
_WEIGHTS[:, MEASURE:HARMONICS] = HANN[:, None]
_KERNEL = _WEIGHTS * np.exp(-2j * np.pi * np.outer(np.arange(BLOCK), BANK_HZ) / SAMPLE_RATE)

# Slack of the per-block screen against the final checks of a digit (framepool.processors._dtmf_segments),
# which measure level, twist and frequency precisely over the whole tone. A block only has to be a
# plausible part of a digit: a tone 1.5 % off frequency loses up to 1.5 dB in its bin, and the blocks at
# the edges of a tone are partly empty.
SCREEN_SLACK_DB = 4.0
# A group's strongest bin must exceed the group's other bins by this much: a tone within 2.5 % of its
# nominal frequency gives its neighbours at least 8.5 dB less (rectangular window, 106 samples).
GROUP_MARGIN_DB = 6.0
# The two strongest bins must hold this share of the block's energy. A tone filling a fraction c of
# the block puts a share c in its bin, so this also drops blocks less than ~60 % covered by the tone.
BLOCK_ENERGY_SHARE = 0.6

Blocks = npt.NDArray[np.float64]


def tone_energy(bins: npt.NDArray[np.complex128]) -> npt.NDArray[np.float64]:
    """The energy (sum of squares over the block) of the sinusoid each bin holds, when on its frequency."""
    return np.asarray(2.0 * np.abs(bins) ** 2 / BLOCK)


def analyse(samples: Blocks) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.float64]]:
    """The bank's bins (n_blocks x 16, complex) and each block's energy, for every block that starts at
    a multiple of HOP and fits in `samples`."""
    count = (samples.size - BLOCK) // HOP + 1
    if count <= 0:
        return np.empty((0, BANK_HZ.size), np.complex128), np.empty(0)
    blocks = np.lib.stride_tricks.as_strided(
        samples, shape=(count, BLOCK), strides=(HOP * samples.strides[0], samples.strides[0]), writeable=False
    )
    bins = np.asarray(blocks @ _KERNEL, np.complex128)
    energy: npt.NDArray[np.float64] = np.einsum("ij,ij->i", blocks, blocks)
    return bins, energy


def screen(
    bins: npt.NDArray[np.complex128],
    energy: npt.NDArray[np.float64],
    min_level_dbfs: float,
    normal_twist_db: float,
    reverse_twist_db: float,
) -> npt.NDArray[np.int64]:
    """Per block, the index in KEYS of the digit the block may belong to, or -1."""
    power = tone_energy(bins[:, :8])
    rows = np.arange(power.shape[0])
    low = power[:, :4].argmax(axis=1)
    high = power[:, 4:].argmax(axis=1)
    low_energy = power[rows, low]
    high_energy = power[rows, 4 + high]
    others = power.copy()
    others[rows, low] = 0.0
    others[rows, 4 + high] = 0.0
    slack = 10.0 ** (SCREEN_SLACK_DB / 10)
    margin = 10.0 ** (GROUP_MARGIN_DB / 10)
    floor = (FULL_SCALE * 10.0 ** (min_level_dbfs / 20)) ** 2 * BLOCK / slack
    twist = low_energy / np.maximum(high_energy, 1e-12)
    passed = (
        (low_energy >= floor)
        & (high_energy >= floor)
        & (low_energy >= margin * others[:, :4].max(axis=1))
        & (high_energy >= margin * others[:, 4:].max(axis=1))
        & (twist <= 10.0 ** (normal_twist_db / 10) * slack)
        & (twist * 10.0 ** (reverse_twist_db / 10) * slack >= 1.0)
        & (low_energy + high_energy >= BLOCK_ENERGY_SHARE * energy)
    )
    return np.where(passed, 4 * low + high, -1)


def response(
    offset_hz: npt.NDArray[np.float64], window: npt.NDArray[np.float64]
) -> npt.NDArray[np.complex128]:
    """The bin value, over one block through `window`, of a unit complex exponential `offset_hz` away
    from the bin's frequency: what the level and the harmonics' leakage corrections need."""
    phase = 2j * np.pi * np.asarray(offset_hz, np.float64)[..., None] * np.arange(BLOCK) / SAMPLE_RATE
    return np.asarray((window * np.exp(phase)).sum(axis=-1))
