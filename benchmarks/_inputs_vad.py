"""Benchmark inputs of vad and silence (benchmark process): 2 s of espeak-ng speech with pauses in pink noise
at 20 dB SNR, at each processor's native format (16 kHz mono for vad and silence by no-speech, 48 kHz mono
for silence by level), in the frames each asks for. Deterministic (seeded corpus)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.signal import resample_poly

from framepool.processors import AudioFrame, parse_spec, resolve
from tests.support.context import audio_frames
from tests.support.speech_corpus import RATE, mix, speech_track

SPECS = {
    "vad": "vad",
    "vad-webrtc": "vad(engine=webrtc)",
    "silence": "silence",
    "silence-vad": "silence(mode=vad)",
}


def speech(sample_rate: int) -> np.ndarray:
    """2 s of noisy speech starting inside an utterance, at `sample_rate`."""
    track = speech_track(4, seed=5)
    audio = mix(track, "pink", 20, seed=6)[track.onsets[0] - RATE // 2 :][: 2 * RATE]
    if sample_rate != RATE:
        audio = np.round(resample_poly(audio.astype(np.float64), sample_rate, RATE)).clip(-32768, 32767)
    return audio.astype(np.int16)


def inputs() -> dict[str, tuple[str, list[Any]]]:
    result: dict[str, tuple[str, list[Any]]] = {}
    for name, spec in SPECS.items():
        fmt = resolve(parse_spec(spec)).fmt
        frames: list[AudioFrame] = list(audio_frames(speech(fmt.sample_rate), fmt.sample_rate, fmt.frame_ms))
        result[name] = (spec, frames)
    return result
