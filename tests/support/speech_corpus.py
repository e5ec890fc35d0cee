"""A speech corpus made on the spot: espeak-ng sentences with pauses, noise (white, pink, babble) mixed at a
given SNR, and the ground truth from the clean speech (test process; benchmarks use it too).

Deterministic: the same seed gives the same audio. All audio is int16 mono at 16 kHz (espeak-ng speaks at
22.05 kHz; resampled with a polyphase filter).
"""

from __future__ import annotations

import functools
import io
import itertools
import subprocess
import wave
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

RATE = 16000
FRAME = RATE // 100  # ground truth per 10 ms
VOICES = ["en-us", "en-us+f3", "en-gb+m3", "en-us+f2", "en-gb-scotland", "en-us+m5", "en-029+f4", "en+klatt"]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call me back when you get this message, it is about the meeting tomorrow.",
    "We measured the level of the signal at every point along the line.",
    "Seven hundred and forty two people signed up for the course this year.",
    "Could you tell me where the nearest train station is?",
    "The weather will be cloudy in the morning with some rain later on.",
    "She sells sea shells by the sea shore every summer.",
    "Turn left at the second light and then keep going straight ahead.",
    "Our results show a clear improvement over the previous version.",
    "I would like a cup of coffee with milk and no sugar please.",
    "The library closes at nine on weekdays and at six on Sundays.",
    "Numbers such as three, eleven and forty seven are easy to remember.",
]


@functools.cache
def speak(text: str, voice: str, speed: int = 160) -> npt.NDArray[np.int16]:
    """espeak-ng's rendering of `text`, at 16 kHz, without its leading and trailing silence."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True, check=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        native = np.frombuffer(reader.readframes(reader.getnframes()), np.int16)
        rate = reader.getframerate()
    audio = resample_poly(native.astype(np.float64), RATE, rate)
    voiced = np.flatnonzero(np.abs(audio) > 64)
    trimmed = audio[voiced[0] : voiced[-1] + 1] if voiced.size else audio
    return np.clip(np.round(trimmed), -32768, 32767).astype(np.int16)


@dataclass(frozen=True)
class Track:
    clean: npt.NDArray[np.int16]
    truth: npt.NDArray[np.bool_]  # speech per 10 ms frame
    onsets: list[int]  # samples where an utterance starts after a pause


def speech_track(seconds: float, seed: int) -> Track:
    """Sentences in several voices separated by 0.6 to 1.6 s pauses, starting after a pause."""
    rng = np.random.default_rng(seed)
    parts: list[npt.NDArray[np.int16]] = []
    onsets: list[int] = []
    length = 0
    while length < seconds * RATE:
        pause = np.zeros(int(rng.uniform(0.6, 1.6) * RATE), np.int16)
        voice = VOICES[int(rng.integers(len(VOICES)))]
        sentence = SENTENCES[int(rng.integers(len(SENTENCES)))]
        utterance = speak(sentence, voice, int(rng.integers(140, 190)))
        onsets.append(length + pause.size)
        parts += [pause, utterance]
        length += pause.size + utterance.size
    parts.append(np.zeros(RATE // 2, np.int16))
    clean = np.concatenate(parts)
    return Track(clean, ground_truth(clean), onsets)


def ground_truth(clean: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    """Speech frames of the clean track: within 40 dB of its loudest 10 ms, with the gaps between words
    (under 300 ms; the pauses between utterances are longer) counted as speech."""
    frames = clean[: clean.size - clean.size % FRAME].astype(np.float64).reshape(-1, FRAME)
    energy = (frames**2).mean(axis=1)
    active = energy > energy.max() * 1e-4
    indices = np.flatnonzero(active)
    for before, after in itertools.pairwise(indices):
        if 1 < after - before <= 30:
            active[before:after] = True
    return active


def white_noise(samples: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    return rng.standard_normal(samples)


def pink_noise(samples: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """1/f power: white noise shaped by 1/sqrt(f) in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    frequencies = np.fft.rfftfreq(samples)
    frequencies[0] = frequencies[1]
    return np.fft.irfft(spectrum / np.sqrt(frequencies), samples)


def babble_noise(samples: int, rng: np.random.Generator, talkers: int = 6) -> npt.NDArray[np.float64]:
    """Several espeak voices talking at once, continuously."""
    total = np.zeros(samples)
    for talker in range(talkers):
        voice = VOICES[talker % len(VOICES)]
        parts: list[npt.NDArray[np.int16]] = []
        filled = 0
        while filled < samples:
            sentence = SENTENCES[int(rng.integers(len(SENTENCES)))]
            parts.append(speak(sentence, voice, 170))
            filled += parts[-1].size
        voice_audio = np.roll(np.concatenate(parts)[:samples].astype(np.float64), int(rng.integers(samples)))
        total += voice_audio / (np.sqrt((voice_audio**2).mean()) + 1e-9)
    return total


NOISES = {"white": white_noise, "pink": pink_noise, "babble": babble_noise}


def mix(track: Track, noise_kind: str, snr_db: float, seed: int) -> npt.NDArray[np.int16]:
    """`track` plus noise scaled so the speech frames' power is `snr_db` above the noise's."""
    rng = np.random.default_rng(seed)
    noise = NOISES[noise_kind](track.clean.size, rng)
    speech = track.clean.astype(np.float64)
    frames = track.truth.size * FRAME
    speech_power = (speech[:frames].reshape(-1, FRAME)[track.truth] ** 2).mean()
    noise *= np.sqrt(speech_power / (noise**2).mean() / 10 ** (snr_db / 10))
    mixed = speech + noise
    peak = np.abs(mixed).max()
    if peak > 32767:
        mixed *= 32767 / peak
    return np.round(mixed).astype(np.int16)
