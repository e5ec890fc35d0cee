"""Benchmark inputs of the `dtmf` group (benchmark process): about 2 s of representative frames for
`dtmf` (8 kHz, a digit sequence over speech-like noise) and `audio-quality` (48 kHz speech-like audio
with a clipped burst, a dropout and a click)."""

from __future__ import annotations

from typing import Any

import numpy as np

from framepool.processors import AudioFormat, AudioFrame, parse_spec, resolve


def _frames(spec: str, samples: np.ndarray) -> tuple[str, list[Any]]:
    fmt = resolve(parse_spec(spec)).fmt
    assert isinstance(fmt, AudioFormat)
    step = fmt.sample_rate * fmt.frame_ms // 1000
    frames = [
        AudioFrame(
            samples[i : i + step].reshape(-1, 1),
            fmt.sample_rate,
            1,
            i * 1_000_000 // fmt.sample_rate,
            n,
            False,
        )
        for n, i in enumerate(range(0, samples.size - step + 1, step))
    ]
    return spec, frames


def _voice(rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Speech-like: a gliding harmonic voice, syllable-modulated, over noise."""
    t = np.arange(round(rate * seconds)) / rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return np.asarray(3000 * voice * syllables + rng.normal(0, 200, t.size))


def inputs() -> dict[str, tuple[str, list[Any]]]:
    rng = np.random.default_rng(12)
    low, high = [697, 770, 852, 941], [1209, 1336, 1477, 1633]
    telephone = _voice(8000, 2.0, rng) * 0.3
    t = np.arange(560) / 8000
    for digit in range(10):  # 70 ms digits every 200 ms
        start = digit * 1600
        pair = np.sin(2 * np.pi * low[digit % 4] * t) + np.sin(2 * np.pi * high[digit // 4 % 4] * t)
        telephone[start : start + t.size] += 5000 * pair
    wideband = _voice(48000, 2.0, rng)
    wideband[30_000:32_000] *= 12  # clipped once converted
    wideband[60_000:60_480] = 0
    wideband[80_000] += 9000
    return {
        "dtmf": _frames("dtmf", np.clip(telephone, -32768, 32767).astype(np.int16)),
        "audio-quality": _frames("audio-quality", np.clip(wideband, -32768, 32767).astype(np.int16)),
    }
