"""Benchmark inputs of the loudness group (benchmark process): ~2 s of stereo speech-like audio at the
`loudness` processor's native format (48 kHz, 100 ms frames), true peak on, the costly case."""

from __future__ import annotations

from typing import Any

import numpy as np

from framepool.processors import AudioFormat, AudioFrame, parse_spec, resolve

SPEC = "loudness(channels=2)"


def speech_like(seconds: float, sample_rate: int, seed: int = 3) -> np.ndarray:
    """Voiced syllables (a 120 Hz harmonic series with two formant-like peaks, 4 syllables a second) over
    breath noise, the right channel a delayed, quieter copy: (samples, 2) int16, deterministic."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    pitch = 120.0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    formants = (700.0, 1200.0)
    voice = sum(
        np.sin(k * phase) / k * sum(np.exp(-(((k * 120.0) - f) ** 2) / (2 * 150.0**2)) for f in formants)
        for k in range(1, 30)
    )
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 2
    left = 0.3 * voice * syllables + 0.005 * rng.standard_normal(t.size)
    right = np.roll(left, 240) * 0.7
    return np.clip(np.stack([left, right], axis=1) * 32768, -32768, 32767).astype(np.int16)


def inputs() -> dict[str, tuple[str, list[Any]]]:
    fmt = resolve(parse_spec(SPEC)).fmt
    assert isinstance(fmt, AudioFormat)
    step = fmt.sample_rate * fmt.frame_ms // 1000
    samples = speech_like(2.0, fmt.sample_rate)
    frames = [
        AudioFrame(
            np.ascontiguousarray(samples[start : start + step]),
            fmt.sample_rate,
            fmt.channels,
            start * 1_000_000 // fmt.sample_rate,
            seq,
            False,
        )
        for seq, start in enumerate(range(0, samples.shape[0] - step + 1, step))
    ]
    return {"loudness": (SPEC, frames)}
