"""Silence by level, decided as FFmpeg's `silencedetect` decides it (worker process).

Reference: libavfilter/af_silencedetect.c with `mono=0` on s16 input. A sample value is silent when
`-noise < value < noise`, where `noise` is the amplitude ratio times 32767 converted to int16 (truncated:
0.001 gives 32, so 31 is silent and 32 is not). The values are counted interleaved, all channels together:
silence is reported once `duration × channels` consecutive values are silent (`duration` in samples is the
option's µs rescaled to the rate, rounded to nearest), starting at the sample frame of the value that
completes the count, plus one, minus `duration`; it ends at the sample frame of the next value that is not
silent; a silence still open at the end of the stream ends there. Frame boundaries change nothing: the
count carries over.

Per frame the work is a comparison per value and a search over the loud values (numpy): a Python step per
silence found, never per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

INT16_MAX = 32767


@dataclass(frozen=True, slots=True)
class SilenceEdge:
    kind: Literal["silence_start", "silence_end"]
    sample: int  # sample frame (per channel) position


def duration_samples(duration_s: float, sample_rate: int) -> int:
    """FFmpeg's duration option in µs, rescaled to samples with av_rescale's rounding (half away from 0)."""
    duration_us = round(duration_s * 1_000_000)
    return (duration_us * sample_rate + 500_000) // 1_000_000


def int16_threshold(noise: float) -> int:
    """The s16 threshold silencedetect compares with: noise × INT16_MAX, truncated to an integer."""
    return int(noise * INT16_MAX)


class LevelSilence:
    """Silence edges of an interleaved int16 stream (see module)."""

    def __init__(self, *, noise: float, duration_s: float, sample_rate: int, channels: int) -> None:
        self.threshold = int16_threshold(noise)
        self.channels = channels
        self.duration = duration_samples(duration_s, sample_rate)
        # silencedetect counts a value first and then compares the count with `duration × channels`, so
        # with a duration of 0 one silent value is enough.
        self.needed = max(1, self.duration * channels)
        self.values = 0  # interleaved values seen
        self.run = 0  # silent values in a row before the next value, while no silence is reported
        self.start: int | None = None  # start of the reported silence, until it ends

    def push(self, samples: npt.NDArray[np.int16]) -> list[SilenceEdge]:
        flat = samples.reshape(-1).astype(np.int32)
        loud = np.flatnonzero((flat >= self.threshold) | (flat <= -self.threshold))
        edges: list[SilenceEdge] = []
        base = self.values
        if loud.size == 0:
            self._silent_run(base, flat.size, edges)
        else:
            self._silent_run(base, int(loud[0]), edges)
            self._loud(base + int(loud[0]), edges)
            gaps = np.diff(loud) - 1
            for index in np.flatnonzero(gaps >= self.needed):
                self._silent_run(base + int(loud[index]) + 1, int(gaps[index]), edges)
                self._loud(base + int(loud[index + 1]), edges)
            tail = flat.size - int(loud[-1]) - 1
            self._silent_run(base + int(loud[-1]) + 1, tail, edges)
        self.values = base + flat.size
        return edges

    def finish(self) -> list[SilenceEdge]:
        """At the end of the stream an open silence ends with it."""
        if self.start is None:
            return []
        self.start = None
        return [SilenceEdge("silence_end", self.values // self.channels)]

    def _silent_run(self, first: int, length: int, edges: list[SilenceEdge]) -> None:
        """`length` silent values from value index `first`."""
        if self.start is not None or length <= 0:
            return
        if self.run + length >= self.needed:
            completing = first + self.needed - self.run - 1
            self.start = completing // self.channels + 1 - self.duration
            edges.append(SilenceEdge("silence_start", self.start))
        else:
            self.run += length

    def _loud(self, index: int, edges: list[SilenceEdge]) -> None:
        """A value that is not silent, at value index `index`: it ends a silence and the count."""
        if self.start is not None:
            edges.append(SilenceEdge("silence_end", index // self.channels))
        self.start = None
        self.run = 0
