"""Detectors of the `audio-quality` processor (worker process): runs of samples (clipped, exact zeros)
and clicks, each fed frame after frame and reporting positions as sample indices from the stream's start.

All three are vectorised per frame (numpy over the frame, never a Python loop per sample); state carries
across frames so a run or a click that straddles two frames is found whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


@dataclass(slots=True)
class Run:
    start: int  # first sample of the run
    end: int  # one past its last sample

    @property
    def length(self) -> int:
        return self.end - self.start


class RunFinder:
    """Maximal runs of consecutive samples where a mask is true, across frames."""

    def __init__(self) -> None:
        self.open_start: int | None = None  # the run reaching the end of the last frame, if any

    def feed(self, mask: npt.NDArray[np.bool_], first: int) -> list[Run]:
        """The runs that ended in this frame (`first`: the index of its first sample)."""
        edges = np.diff(mask.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts = (np.flatnonzero(edges == 1) + first).tolist()
        ends = (np.flatnonzero(edges == -1) + first).tolist()
        if self.open_start is not None:
            if starts and starts[0] == first:
                starts[0] = self.open_start
            else:  # the open run ended with the last frame
                starts.insert(0, self.open_start)
                ends.insert(0, first)
        self.open_start = None
        if ends and ends[-1] == first + mask.size:
            self.open_start = starts.pop()
            ends.pop()
        return [Run(start, end) for start, end in zip(starts, ends, strict=True)]

    def open_length(self, end: int) -> int:
        """How long the run still open at sample `end` is (0: none)."""
        return 0 if self.open_start is None else end - self.open_start


# The fourth difference x[n-2] - 4 x[n-1] + 6 x[n] - 4 x[n+1] + x[n+2]: it passes a discontinuity's
# energy near the Nyquist frequency (gain 16) and attenuates audio content steeply (gain 0.015 at 1 kHz
# and 48 kHz), so a click stands out of speech and music far more than in the second difference, whose
# glottal-pulse peaks in voiced speech reach 30 robust standard deviations on espeak-ng voices.
DIFFERENCE = np.array([1.0, -4.0, 6.0, -4.0, 1.0])
HALF = 2  # samples the difference reaches on each side


class ClickDetector:
    """Clicks: samples whose fourth difference is an outlier against the local median absolute deviation.

    The local scale is the MAD of the difference over a block (5 ms), taken as the largest of the block's
    and its two neighbours' (so a block where speech starts after silence is judged against the speech,
    not the silence). A sample is part of a click when its |difference| exceeds `factor` times 1.4826 x
    that scale (the MAD of Gaussian noise is 0.6745 σ) and `floor`; flagged samples closer than `merge`
    samples are one click, reported at its largest |difference|. Blocks are judged once their next
    neighbour is in: one block of latency.
    """

    def __init__(self, block: int, factor: float, floor: float, merge: int) -> None:
        self.block = block
        self.factor = factor * 1.4826
        self.floor = floor
        self.merge = merge
        self._samples = np.empty(0)  # from index self._start: HALF samples before the next block, then more
        self._start = -1
        self._previous_scale = 0.0  # of the block before the one awaiting its neighbour
        self._last_click = -(1 << 62)

    def feed(self, samples: Samples, first: int) -> list[tuple[int, float]]:
        """Clicks (sample index, |difference|) in the blocks this frame completes."""
        if self._start < 0 and samples.size >= 2:  # no left neighbours: extrapolate (a line has none)
            slope = float(samples[1]) - float(samples[0])
            self._samples, self._start = samples[0] - slope * np.arange(HALF, 0, -1.0), first - HALF
        buffer = np.concatenate((self._samples, samples.astype(np.float64)))
        count = (buffer.size - 2 * HALF) // self.block  # blocks with their right neighbours available
        if count < 2:
            self._samples = buffer
            return []
        span = count * self.block
        difference = sum(weight * buffer[j : j + span] for j, weight in enumerate(DIFFERENCE))
        blocks = np.asarray(difference).reshape(count, self.block)
        mad = np.median(np.abs(blocks - np.median(blocks, axis=1, keepdims=True)), axis=1)
        neighbours = np.concatenate(([self._previous_scale], mad, [0.0]))
        scale = np.maximum(np.maximum(neighbours[:-2], neighbours[1:-1]), neighbours[2:])[:-1]
        judged = blocks[:-1]  # the last block waits for its right neighbour
        limit = np.maximum(self.factor * scale, self.floor)[:, None]
        flagged = np.flatnonzero(np.abs(judged) > limit)
        clicks = self._group(flagged, np.abs(judged).ravel())
        self._previous_scale = float(mad[-2])
        kept = (count - 1) * self.block
        self._samples = buffer[kept:]
        self._start += kept
        return clicks

    def _group(
        self, flagged: npt.NDArray[np.intp], magnitude: npt.NDArray[np.float64]
    ) -> list[tuple[int, float]]:
        """Flagged samples (offsets from the judged blocks' first sample) as clicks."""
        clicks: list[tuple[int, float]] = []
        if flagged.size == 0:
            return clicks
        groups = np.split(flagged, np.flatnonzero(np.diff(flagged) > self.merge) + 1)
        origin = self._start + HALF  # the index of the judged blocks' first sample
        for group in groups:
            peak = int(group[magnitude[group].argmax()])
            index = origin + peak
            if index - self._last_click > self.merge:
                clicks.append((index, float(magnitude[peak])))
                self._last_click = index
        return clicks
