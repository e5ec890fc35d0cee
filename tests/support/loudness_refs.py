"""Reference loudness meters run on the same samples as the `loudness` processor (test process): FFmpeg's
`ebur128` filter through PyAV's filter graph, and libebur128 through pyebur128; and test signals
(EBU Tech 3341 / 3342 tones, espeak-ng speech, synthetic music)."""

from __future__ import annotations

import io
import math
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.filter
import numpy as np
import numpy.typing as npt
import pyebur128

Signal = npt.NDArray[np.float64]  # (samples, channels), 1.0 = full scale


@dataclass
class Readings:
    """A meter's values every 100 ms (the k-th after 100 (k+1) ms of audio) and at the end."""

    momentary: list[float] = field(default_factory=list)
    short_term: list[float] = field(default_factory=list)
    integrated: float = -math.inf
    lra: float = 0.0
    true_peak_dbtp: float = -math.inf


def pcm16(signal: Signal) -> npt.NDArray[np.int16]:
    """Full scale 1.0 to int16 (32768), rounded and clipped, as the ring delivers it."""
    return np.clip(np.round(signal * 32768.0), -32768, 32767).astype(np.int16)


def as_float(samples: npt.NDArray[np.int16]) -> Signal:
    """The exact values the processor measures, for the references."""
    return samples.reshape(samples.shape[0], -1).astype(np.float64) / 32768.0


def ffmpeg_ebur128(signal: Signal, sample_rate: int, *, dual_mono: bool = False) -> Readings:
    """FFmpeg's ebur128 (peak=true) fed 100 ms frames; its per-frame metadata (lavfi.r128.*) is the meter
    after that frame, its true peak the largest over channels (metadata is linear, 3 decimals)."""
    channels = signal.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="fltp", sample_rate=sample_rate, layout=layout)
    meter = graph.add("ebur128", f"metadata=1:peak=true:dualmono={'true' if dual_mono else 'false'}")
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    step = sample_rate // 10
    planar = np.ascontiguousarray(signal.T.astype(np.float32))
    outputs: list[dict[str, str]] = []
    for start in range(0, planar.shape[1] // step * step, step):
        frame = av.AudioFrame.from_ndarray(planar[:, start : start + step], format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
        graph.push(frame)
        outputs.extend(dict(out.metadata) for out in _drain(graph))
    graph.push(None)
    outputs.extend(dict(out.metadata) for out in _drain(graph))
    readings = Readings(
        momentary=[float(meta["lavfi.r128.M"]) for meta in outputs],
        short_term=[float(meta["lavfi.r128.S"]) for meta in outputs],
    )
    last = outputs[-1]
    readings.integrated, readings.lra = float(last["lavfi.r128.I"]), float(last["lavfi.r128.LRA"])
    peak = float(last["lavfi.r128.true_peak"])
    readings.true_peak_dbtp = 20 * math.log10(peak) if peak > 0 else -math.inf
    return readings


def _drain(graph: av.filter.Graph) -> list[av.AudioFrame]:
    frames = []
    while True:
        try:
            frames.append(graph.pull())
        except (av.BlockingIOError, av.EOFError):
            return frames


def libebur128(signal: Signal, sample_rate: int, *, dual_mono: bool = False) -> Readings:
    """libebur128 (pyebur128, exact mode, not the histogram) fed 100 ms frames."""
    mode = pyebur128.MeasurementMode
    channels = signal.shape[1]
    state = pyebur128.R128State(
        channels, sample_rate, mode.MODE_I | mode.MODE_LRA | mode.MODE_S | mode.MODE_TRUE_PEAK
    )
    if dual_mono:
        state.set_channel(0, pyebur128.ChannelType.DUAL_MONO)
    step = sample_rate // 10
    readings = Readings()
    for start in range(0, signal.shape[0] // step * step, step):
        state.add_frames(np.ascontiguousarray(signal[start : start + step]).ravel(), step)
        readings.momentary.append(pyebur128.get_loudness_momentary(state))
        readings.short_term.append(pyebur128.get_loudness_shortterm(state))
    readings.integrated = pyebur128.get_loudness_global(state)
    readings.lra = pyebur128.get_loudness_range(state)
    peak = max(pyebur128.get_true_peak(state, channel) for channel in range(channels))
    readings.true_peak_dbtp = 20 * math.log10(peak) if peak > 0 else -math.inf
    return readings


def tone(level_dbfs: float, seconds: float, sample_rate: int = 48000, channels: int = 2) -> Signal:
    """EBU Tech 3341's test tone: a 1 kHz sine at `level_dbfs` peak per channel, in phase on every channel."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = 10 ** (level_dbfs / 20) * np.sin(2 * np.pi * 1000.0 * t)
    return np.repeat(wave[:, None], channels, axis=1)


def silence(seconds: float, sample_rate: int = 48000, channels: int = 2) -> Signal:
    return np.zeros((round(seconds * sample_rate), channels))


def espeak_speech(text: str, sample_rate: int = 48000) -> Signal:
    """espeak-ng's voice (22.05 kHz) resampled with FFmpeg to `sample_rate`, mono."""
    wav = subprocess.run(["espeak-ng", "--stdout", "-s", "160", text], capture_output=True, check=True)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks = []
    with av.open(io.BytesIO(wav.stdout)) as container:
        for frame in container.decode(audio=0):
            chunks.extend(out.to_ndarray().ravel() for out in resampler.resample(frame))
    chunks.extend(out.to_ndarray().ravel() for out in resampler.resample(None))
    return np.concatenate(chunks).astype(np.float64)[:, None]


def synthetic_music(seconds: float, sample_rate: int = 48000, seed: int = 7) -> Signal:
    """Stereo music-like programme: chords of harmonic tones with decaying notes, a bass line, noise
    percussion, and a slow crescendo (so the loudness range is not zero)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    beat = 0.5
    position = t % beat
    notes = rng.choice([220.0, 246.9, 261.6, 293.7, 329.6, 349.2, 392.0], size=int(seconds / beat) + 1)
    pitch = notes[(t // beat).astype(int)]
    envelope = np.exp(-position * 4.0)
    chord = sum(np.sin(2 * np.pi * pitch * ratio * t) / k for k, ratio in enumerate((1, 1.25, 1.5, 2), 1))
    bass = 0.6 * np.sin(2 * np.pi * pitch / 4 * t) * np.exp(-position * 2.0)
    hats = rng.standard_normal(n) * np.exp(-((t + beat / 2) % beat) * 40.0) * 0.3
    crescendo = 10 ** ((-20 + 14 * t / seconds) / 20)
    left = crescendo * (0.25 * chord * envelope + 0.3 * bass + hats)
    right = crescendo * (0.2 * chord * envelope + 0.35 * bass + 0.6 * hats)
    return np.stack([left, right], axis=1)
