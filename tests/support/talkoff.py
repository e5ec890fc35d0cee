"""Talk-off corpora for the DTMF tests (test process): speech synthesised with espeak-ng in several
voices, and music-like audio (melodies and chords of harmonic tones), both at 8 kHz int16."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

RATE = 8000

TEXT = (
    "Thank you for calling. Please listen carefully, as our menu options have changed. "
    "For billing questions, press one. To report an outage, say outage or press two. "
    "Our offices are open Monday to Friday from nine in the morning until six thirty in the evening. "
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells. "
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood? "
    "The meeting moved to Thursday afternoon; bring the quarterly figures and the revised budget. "
    "Seven hundred and forty two, eighteen, ninety nine, three thousand and six, zero point five. "
    "Whistling wind, ringing bells, a long sustained eeeee and ooooo and aaaah, then silence. "
    "I would like to speak to an agent, please. My account number is four four one nine two eight. "
    "Peter Piper picked a peck of pickled peppers. Is this the real life, or is this just fantasy? "
)
# espeak-ng voices with variants, speeds (words per minute) and pitches (0 to 99): male, female, child.
VOICES = [
    ("en-us", 160, 50),
    ("en-us+f3", 175, 80),
    ("en+m3", 140, 30),
    ("en+f2", 190, 90),
    ("de+m1", 150, 40),
    ("de+f4", 165, 85),
    ("fr+m2", 170, 45),
    ("fr+f1", 155, 75),
    ("es+m4", 180, 55),
    ("it+f5", 160, 99),
    ("en-gb-x-rp+klatt", 150, 60),
    ("pt+m7", 145, 20),
    ("nl+f3", 170, 70),
    ("en-us+whisper", 160, 50),
]


def speech(directory: Path) -> npt.NDArray[np.int16]:
    """All the voices reading TEXT, one after another, resampled to 8 kHz (cached in `directory`)."""
    cached = directory / "speech-8k.s16"
    if not cached.exists():
        parts = []
        for voice, speed, pitch in VOICES:
            wav = directory / f"{voice}.wav"
            command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), TEXT]
            subprocess.run(command, check=True, capture_output=True)
            parts.append(decode_8k(wav))
        np.concatenate(parts).tofile(cached)
    return np.fromfile(cached, np.int16)


def decode_8k(path: Path) -> npt.NDArray[np.int16]:
    """A file's audio as 8 kHz mono int16 (FFmpeg's resampler, through PyAV)."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
        frames += resampler.resample(None)
    return np.concatenate([frame.to_ndarray().ravel() for frame in frames]).astype(np.int16)


def note_hz(midi: npt.NDArray[np.float64] | float) -> npt.NDArray[np.float64]:
    return np.asarray(440.0 * 2 ** ((np.asarray(midi) - 69) / 12))


def harmonic_tone(
    freq: float, seconds: float, timbre: str, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """A note with harmonics up to the Nyquist frequency (in sine phase: one waveform per timbre, as one
    instrument keeps its shape from note to note), an attack and decay, and a little vibrato:
    `saw` (all harmonics, 1/k: strings, brass), `odd` (odd harmonics, 1/k: clarinet), `soft` (1/k²:
    flute, voice-like)."""
    t = np.arange(round(seconds * RATE)) / RATE
    vibrato = 1 + 0.004 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)
    phase = 2 * np.pi * freq * np.cumsum(vibrato) / RATE
    signal = np.zeros_like(t)
    for k in range(1, int(RATE / 2 / freq) + 1):
        if timbre == "odd" and k % 2 == 0:
            continue
        weight = 1 / k**2 if timbre == "soft" else 1 / k
        signal += weight * np.sin(k * phase)
    envelope = np.minimum(1, t / 0.01) * np.exp(-t * rng.uniform(0.5, 3))
    return np.asarray(signal * envelope)


# Notes within 2 % of a DTMF frequency: F5, G5, A#5 (697, 770, 941 Hz) and E6, F#6, G#6 (1336, 1477, 1633),
# and their neighbours G#5, A5, D6, D#6 (2.5 to 3.3 % off 852 and 1209).
NEAR_LOW = np.array([77, 79, 80, 81, 82])
NEAR_HIGH = np.array([86, 87, 88, 90, 92])


def chord(rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Half the time 2 to 4 notes from C4 to C7, half the time a near-DTMF pair (a low note and a high
    note from above), alone or with a third note."""
    if rng.random() < 0.5:
        return rng.choice(np.arange(60, 97), size=rng.integers(2, 5), replace=False)
    pair = [rng.choice(NEAR_LOW), rng.choice(NEAR_HIGH)]
    extra = [rng.choice(np.setdiff1d(np.arange(60, 97), pair))] if rng.random() < 0.5 else []
    return np.array(pair + extra)


def music(seconds: float, seed: int = 7) -> npt.NDArray[np.int16]:
    """Chords of harmonic notes (every timbre) of 60 to 400 ms, overlapping as they decay; half of them
    hold a note pair within 2 to 3 % of a DTMF pair, the hardest music a DTMF detector meets."""
    rng = np.random.default_rng(seed)
    out = np.zeros(round(seconds * RATE) + RATE)
    position = 0
    while position < seconds * RATE:
        length = rng.uniform(0.06, 0.4)
        for midi in chord(rng):
            note = harmonic_tone(
                float(note_hz(midi)), length * 1.5, str(rng.choice(["saw", "odd", "soft"])), rng
            )
            end = min(out.size, position + note.size)
            out[position:end] += note[: end - position] * rng.uniform(0.3, 1)
        position += round(length * RATE)
    out = out[: round(seconds * RATE)]
    return np.asarray(np.round(out / np.abs(out).max() * 20000), np.int16)
