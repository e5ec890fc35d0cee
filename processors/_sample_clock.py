"""Times of sample positions in a stream (worker process).

An event found at a sample position (a speech start, a silence start) is reported in µs on the frames'
clock: the time of the first frame plus the samples since, at the stream's rate. Live frame times are
arrival times, with jitter; counting samples keeps event times as exact as the audio itself, and the clock
re-anchors at a frame that follows lost frames (its `gap` flag), where counting alone would drift.
"""

from __future__ import annotations

import bisect

from framepool.processors.api import AudioFrame


class SampleClock:
    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.samples = 0  # samples (per channel) counted so far
        self._anchor_samples: list[int] = []  # sample positions of the anchors, increasing
        self._anchor_times: list[int] = []  # their frame times, µs

    def advance(self, frame: AudioFrame) -> int:
        """Count `frame`'s samples; returns the position of its first sample."""
        first = self.samples
        if not self._anchor_samples or frame.gap:
            self._anchor_samples.append(first)
            self._anchor_times.append(frame.time_us)
        self.samples += frame.samples.shape[0]
        return first

    def time_us(self, sample: int) -> int:
        """The time of sample position `sample` (0 before any frame)."""
        if not self._anchor_samples:
            return 0
        index = max(0, bisect.bisect_right(self._anchor_samples, sample) - 1)
        offset = sample - self._anchor_samples[index]
        return self._anchor_times[index] + round(offset * 1_000_000 / self.sample_rate)
