"""DTMF test signals (test process): tone pairs with chosen offsets, levels, twist, durations and pauses,
in noise, at 8 kHz int16."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from framepool.processors._dtmf_blocks import HIGH_HZ, KEYS, LOW_HZ

RATE = 8000
FULL_SCALE = 32768.0


@dataclass(frozen=True)
class Tone:
    """One digit's tone: offsets in percent of the nominal frequencies, levels in dBFS RMS per tone."""

    key: str
    duration_ms: float = 60.0
    low_offset_pct: float = 0.0
    high_offset_pct: float = 0.0
    low_dbfs: float = -16.0
    high_dbfs: float = -16.0
    gap_ms: Sequence[float] = ()  # interruptions: (start within the tone, length), both ms

    def samples(self, rate: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
        index = KEYS.index(self.key)
        low = LOW_HZ[index // 4] * (1 + self.low_offset_pct / 100)
        high = HIGH_HZ[index % 4] * (1 + self.high_offset_pct / 100)
        t = np.arange(round(self.duration_ms * rate / 1000)) / rate
        phases = rng.uniform(0, 2 * np.pi, 2)
        signal = amplitude(self.low_dbfs) * np.sin(2 * np.pi * low * t + phases[0]) + amplitude(
            self.high_dbfs
        ) * np.sin(2 * np.pi * high * t + phases[1])
        if self.gap_ms:
            start, length = self.gap_ms
            signal[round(start * rate / 1000) : round((start + length) * rate / 1000)] = 0.0
        return signal


def amplitude(dbfs: float) -> float:
    """The peak amplitude of a sine whose RMS is `dbfs` (0 dBFS: a full-scale square wave's RMS)."""
    return FULL_SCALE * 10 ** (dbfs / 20) * np.sqrt(2)


def sequence(
    tones: Sequence[Tone],
    pause_ms: float = 80.0,
    noise_dbfs: float | None = -50.0,
    rate: int = RATE,
    seed: int = 1,
) -> npt.NDArray[np.int16]:
    """The tones separated by `pause_ms` of silence (and as much before the first and after the last), in
    white noise of `noise_dbfs` RMS (None: none)."""
    rng = np.random.default_rng(seed)
    pause = np.zeros(round(pause_ms * rate / 1000))
    parts = [pause]
    for tone in tones:
        parts += [tone.samples(rate, rng), pause]
    signal = np.concatenate(parts)
    if noise_dbfs is not None:
        signal += rng.normal(0, FULL_SCALE * 10 ** (noise_dbfs / 20), signal.size)
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)
