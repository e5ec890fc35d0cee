"""DTMF segments for the `dtmf` processor (worker process): blocks of one digit joined into a tone,
timed from its edges and validated against the Q.24 limits.

A segment is a run of blocks screened as the same digit (framepool.processors._dtmf_blocks); misses
shorter than the pause end nothing, so a 10 ms interruption (which spoils at most four blocks) stays
inside one digit while a 40 ms pause (which spoils at least nine) separates two. When the segment ends
it is measured over its blocks, not over any single one:

- Edges: the envelope of the pair is the smaller of the two tones' bin magnitudes, each relative to its
  plateau. With a rectangular window a bin's magnitude grows in proportion to the part of the block the
  tone fills, so the envelope crosses one half where the block's centre meets the tone's edge; the
  crossings, interpolated between blocks, time the start and end to a fraction of a millisecond, and
  their distance is the duration (23 ms reads 23 ms, whatever the block alignment).
- Frequency: a tone advances its bin's phase by 2πf·HOP/fs per block; the mean of X[k+1]·conj(X[k])
  over the fully covered blocks gives the offset from the nominal frequency, and its magnitude against
  the mean of |X[k+1]||X[k]| the coherence (a steady tone is 1, speech and sweeps are lower).
- Level: the bin magnitude corrected for the measured offset (the window's response), as dBFS RMS per
  tone; the twist is the low tone's level minus the high tone's.
- Talk-off: the tones' energy (so corrected) against the blocks' energy, and each tone's second
  harmonic against the tone, after removing from the harmonic's bin what the two tones themselves leak
  into it (2 × 697 Hz is only 58 Hz from 1336 Hz, so a digit "2" would otherwise look harmonic-rich).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from framepool.processors._dtmf_blocks import (
    BLOCK,
    FULL_SCALE,
    HANN,
    HARMONIC_HZ,
    HARMONIC_STEPS,
    HARMONICS,
    HOP,
    KEYS,
    MEASURE,
    SAMPLE_RATE,
    TONE_HZ,
    response,
)

# Blocks kept before a segment's first block (its rising edge) and, for long tones, at its end.
LEAD_BLOCKS = 4
HEAD_BLOCKS = 64
TAIL_BLOCKS = 32  # more than the longest pause (20 blocks), so the tail always holds the last hits
# Blocks the tones (nearly) fill: envelope at least this close to the plateau. The Hann window weighs a
# block's ends little, so a block 90 % filled still measures phase and level like a full one.
PLATEAU = 0.85
MIN_COHERENCE = 0.9
MIN_ENERGY_SHARE = 0.8
MAX_HARMONIC_DB = -25.0


@dataclass(slots=True)
class Block:
    start: int  # the block's first sample, counted from the start of the stream
    bins: npt.NDArray[np.complex128]
    energy: float
    digit: int


@dataclass(slots=True)
class Limits:
    min_duration_ms: float
    frequency_tolerance_pct: float
    min_level_dbfs: float
    normal_twist_db: float
    reverse_twist_db: float


@dataclass(slots=True)
class Digit:
    """A validated digit; samples count from the start of the stream."""

    key: str
    start_sample: float
    end_sample: float
    frequencies_hz: tuple[float, float]
    levels_dbfs: tuple[float, float]

    @property
    def duration_ms(self) -> float:
        return (self.end_sample - self.start_sample) * 1000 / SAMPLE_RATE


@dataclass(slots=True)
class Segment:
    digit: int
    head: list[Block]
    tail: deque[Block] = field(default_factory=lambda: deque(maxlen=TAIL_BLOCKS))
    misses: int = 0


class SegmentTracker:
    """Feeds screened blocks in order; returns the digits whose tones have ended."""

    def __init__(self, limits: Limits, pause_blocks: int) -> None:
        self.limits = limits
        self._pause_blocks = pause_blocks
        self._recent: deque[Block] = deque(maxlen=LEAD_BLOCKS)
        self._segment: Segment | None = None

    def push(self, block: Block) -> Digit | None:
        segment = self._segment
        if segment is None:
            if block.digit >= 0:
                self._segment = Segment(block.digit, [*self._recent, block])
            self._recent.append(block)
            return None
        self._recent.append(block)
        (segment.head if len(segment.head) < HEAD_BLOCKS else segment.tail).append(block)
        segment.misses = 0 if block.digit == segment.digit else segment.misses + 1
        if segment.misses < self._pause_blocks:
            return None
        found = self.finish()
        if block.digit >= 0:  # another digit right after this one
            self._segment = Segment(block.digit, [*self._recent])
        return found

    def finish(self) -> Digit | None:
        """End the current segment (the stream ended or lost frames): its digit if it validates."""
        segment, self._segment = self._segment, None
        return None if segment is None else validate(segment, self.limits)


def validate(segment: Segment, limits: Limits) -> Digit | None:
    tones = [segment.digit // 4, 4 + segment.digit % 4]
    head = Blocks(segment.head, segment.digit, tones)
    tail = Blocks([*segment.head, *segment.tail][-TAIL_BLOCKS:], segment.digit, tones)
    start, end = head.rising_edge(), tail.falling_edge()
    if start is None or end is None or (end - start) * 1000 / SAMPLE_RATE < limits.min_duration_ms:
        return None
    offsets = head.frequency_offsets()
    if offsets is None or np.any(np.abs(offsets) > TONE_HZ[tones] * limits.frequency_tolerance_pct / 100):
        return None
    amplitudes = head.amplitudes(offsets)
    low, high = (
        round(20 * math.log10(max(value, 1e-9) / math.sqrt(2) / FULL_SCALE), 2) for value in amplitudes
    )
    if (
        min(low, high) < limits.min_level_dbfs
        or not -limits.reverse_twist_db <= low - high <= limits.normal_twist_db
    ):
        return None
    if not head.talk_off_passed(offsets):
        return None
    found = TONE_HZ[tones] + offsets
    return Digit(KEYS[segment.digit], start, end, (float(found[0]), float(found[1])), (low, high))


class Blocks:
    """A segment's blocks as arrays, and the measurements on them."""

    def __init__(self, blocks: list[Block], digit: int, tones: list[int]) -> None:
        self.tones = tones
        self.starts = np.array([block.start for block in blocks])
        self.bins = np.array([block.bins for block in blocks])
        self.energy = np.array([block.energy for block in blocks])
        self.hits = np.array([block.digit == digit for block in blocks])
        self.measured = self.bins[:, [MEASURE + tone for tone in tones]]
        magnitude = np.abs(self.measured)
        # The plateau: the median over the hits, robust to noise (a maximum would be biased up by it).
        plateau = np.median(magnitude[self.hits], axis=0)
        # The envelope: the smaller of the two tones' magnitudes, each relative to its plateau.
        self.envelope = (magnitude / np.maximum(plateau, 1e-9)).min(axis=1)
        self.plateau = self.hits & (self.envelope >= PLATEAU)
        # Blocks the tones fill completely: both neighbours on the plateau too. A plateau block at the
        # edge may miss 10 % of the tone, which the Hann window hardly sees but the rectangular one does
        # (a cut tone leaks far more into the harmonics' bins).
        self.full = self.plateau & np.roll(self.plateau, 1) & np.roll(self.plateau, -1)
        self.full[[0, -1]] = False

    def rising_edge(self) -> float | None:
        """The sample where the envelope first crosses one half."""
        above = np.flatnonzero(self.envelope >= 0.5)
        if above.size == 0:
            return None
        first = int(above[0])
        if first == 0:
            return float(self.starts[0] + BLOCK / 2)
        level = self.envelope
        fraction = (level[first] - 0.5) / max(level[first] - level[first - 1], 1e-9)
        return float(self.starts[first] - min(1.0, fraction) * HOP + BLOCK / 2)

    def falling_edge(self) -> float | None:
        """The sample where the envelope crosses one half on the way down, after the last hit."""
        hits = np.flatnonzero(self.hits)
        if hits.size == 0:
            return None
        last = int(hits[-1])
        level = self.envelope
        below = np.flatnonzero(level[last + 1 :] < 0.5)
        if below.size == 0:
            return float(self.starts[-1] + BLOCK / 2)
        after = last + 1 + int(below[0])
        fraction = (level[after - 1] - 0.5) / max(level[after - 1] - level[after], 1e-9)
        return float(self.starts[after - 1] + min(1.0, fraction) * HOP + BLOCK / 2)

    def frequency_offsets(self) -> npt.NDArray[np.float64] | None:
        """Each tone's offset from its nominal frequency (Hz), from the phase step between consecutive
        plateau blocks; None when the phase does not advance steadily (not one steady tone)."""
        pairs = self.plateau[1:] & self.plateau[:-1]
        if np.count_nonzero(pairs) < 2:
            return None
        steps = self.measured[1:][pairs] * np.conj(self.measured[:-1][pairs])
        nominal_step = np.exp(-2j * np.pi * TONE_HZ[self.tones] * HOP / SAMPLE_RATE)
        mean_step = (steps * nominal_step).sum(axis=0)
        coherence = np.abs(mean_step) / np.maximum(np.abs(steps).sum(axis=0), 1e-12)
        if np.any(coherence < MIN_COHERENCE):
            return None
        return np.asarray(np.angle(mean_step) * SAMPLE_RATE / (2 * np.pi * HOP))

    def amplitudes(self, offsets: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Each tone's peak amplitude over the plateau, corrected for the window's response at its
        offset."""
        gain = np.abs(response(offsets, HANN))
        return np.asarray(2 * np.median(np.abs(self.measured[self.plateau]), axis=0) / gain)

    def talk_off_passed(self, offsets: npt.NDArray[np.float64]) -> bool:
        """Whether the plateau holds the two tones and little else: their share of the energy, and no
        second harmonic of either, nor a third of the low tone (after removing the tones' own leakage into
        the harmonics' bins): a note with odd harmonics only (a clarinet) has a strong third."""
        # Each tone's complex amplitude (of its positive-frequency half) per block.
        if not self.full.any():
            return False
        halves = self.measured[self.full] / response(offsets, HANN)
        tone_energy = 2 * np.abs(halves) ** 2 * BLOCK
        if tone_energy.sum() < MIN_ENERGY_SHARE * self.energy[self.full].sum():
            return False
        low, high = self.tones
        found = TONE_HZ[self.tones] + offsets
        # (harmonic's index in HARMONIC_HZ, which of the pair it belongs to, its frequency)
        harmonics = [(low, 0, 2 * found[0]), (high, 1, 2 * found[1]), (8 + low, 0, 3 * found[0])]
        columns, bin_hz = [], []
        for index, _, frequency in harmonics:
            step = int(np.abs(HARMONIC_HZ[index] * (1 + HARMONIC_STEPS) - frequency).argmin())
            columns.append(HARMONICS + HARMONIC_HZ.size * step + index)
            bin_hz.append(HARMONIC_HZ[index] * (1 + HARMONIC_STEPS[step]))
        leakage = response(found[:, None] - np.array(bin_hz)[None, :], np.ones(BLOCK))
        residual = self.bins[self.full][:, columns] - halves @ leakage
        harmonic_energy = (2 * np.abs(residual) ** 2 / BLOCK).sum(axis=0)
        own_energy = tone_energy.sum(axis=0)[[tone for _, tone, _ in harmonics]]
        return bool(np.all(harmonic_energy <= 10 ** (MAX_HARMONIC_DB / 10) * own_energy))
