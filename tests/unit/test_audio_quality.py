"""The `audio-quality` processor: exact sample counts against plain-Python references, clicks inserted
into tones and noise, and no false clicks or dropouts on clean tones and espeak-ng speech."""

from __future__ import annotations

import itertools
import math
import subprocess

import numpy as np
import numpy.typing as npt
import pytest

from framepool.processors import AudioFrame, instantiate, parse_spec
from tests.support.context import RecordingContext, audio_frames, run
from tests.support.talkoff import TEXT, VOICES

RATE = 48000


def analyse(
    signal: npt.NDArray[np.int16], spec: str = "audio-quality", frame_ms: int = 100
) -> RecordingContext:
    return run(instantiate(parse_spec(spec)), audio_frames(signal, RATE, frame_ms))


def windows(ctx: RecordingContext) -> list[dict[str, object]]:
    return [payload for _topic, payload in ctx.results if "event" not in payload]


def tone(seconds: float, amplitude: float, hz: float = 440.0, phase: float = 0.3) -> npt.NDArray[np.float64]:
    return np.asarray(amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * RATE)) / RATE + phase))


def runs_of(flags: list[bool]) -> list[tuple[int, int]]:
    """(start, length) of each run of True: the reference, one sample at a time."""
    found, index = [], 0
    for value, group in itertools.groupby(flags):
        length = len(list(group))
        if value:
            found.append((index, length))
        index += length
    return found


def overdriven() -> npt.NDArray[np.int16]:
    """2 s: 0.5 s clean, 1 s driven 3 dB past full scale (clipped at both rails), 0.5 s clean."""
    signal = np.concatenate((tone(0.5, 20000), tone(1.0, 46000, hz=97), tone(0.5, 20000)))
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("frame_ms", [10, 30, 100])
def test_clipped_samples_and_runs_are_counted_exactly(frame_ms: int) -> None:
    signal = overdriven()
    ctx = analyse(signal, "audio-quality(window_ms=500)", frame_ms)
    flags = [value in (32767, -32768) for value in signal.tolist()]
    reference = runs_of(flags)
    per_window = windows(ctx)
    assert len(per_window) == 4
    for number, window in enumerate(per_window):
        span = range(number * 24000, (number + 1) * 24000)
        assert window["clipped_samples"] == sum(flags[i] for i in span)
        inside = [length for start, length in reference if start in span and length >= 3]
        assert window["clip_runs"] == len(inside)
        assert window["longest_clip_run"] == max(inside, default=0)
    assert sum(window["clipped_samples"] for window in per_window) > 20000  # the test means something
    [start] = ctx.events("clip_start")
    [end] = ctx.events("clip_end")
    qualifying = [(start, length) for start, length in reference if length >= 3]
    assert start["time_us"] == qualifying[0][0] * 1_000_000 // RATE
    assert end["end_us"] == (qualifying[-1][0] + qualifying[-1][1]) * 1_000_000 // RATE
    assert end["runs"] == len(qualifying) and end["clipped_samples"] == sum(n for _, n in qualifying)


def test_a_lower_clip_level_and_run_length() -> None:
    signal = overdriven()
    ctx = analyse(signal, "audio-quality(window_ms=2000, clip_level=30000, min_clip_run=10)")
    flags = [value >= 30000 or value <= -30001 for value in signal.tolist()]
    [window] = windows(ctx)
    assert window["clipped_samples"] == sum(flags)
    assert window["clip_runs"] == sum(1 for _, length in runs_of(flags) if length >= 10)


def speech_like(seconds: float, seed: int = 3, noise: float = 300) -> npt.NDArray[np.float64]:
    """Two tones and noise at about -20 dBFS: never silent, never exactly zero for long."""
    rng = np.random.default_rng(seed)
    return (
        tone(seconds, 2000, hz=180)
        + tone(seconds, 1200, hz=1270)
        + rng.normal(0, noise, round(seconds * RATE))
    )


@pytest.mark.parametrize("frame_ms", [10, 100])
def test_zero_runs_inside_audio_are_dropouts_and_digital_silence_is_not(frame_ms: int) -> None:
    signal = speech_like(4.0)
    holes = {24_000: 48, 60_001: 480, 96_000: 30, 119_990: 960}  # start: length (30 < 1 ms: too short)
    for start, length in holes.items():
        signal[start : start + length] = 0
    signal[150_000:] = 0  # from 3.125 s: digital silence to the end, not a dropout
    samples = np.round(signal).astype(np.int16)
    ctx = analyse(samples, "audio-quality(window_ms=1000)", frame_ms)
    events = ctx.events("dropout")
    expected = [(start, length) for start, length in holes.items() if length >= 48]
    assert [(event["time_us"], event["samples"]) for event in events] == [
        (start * 1_000_000 // RATE, length) for start, length in expected
    ]
    assert [w["dropouts"] for w in windows(ctx)] == [1, 1, 1, 0]
    assert [w["dropout_samples"] for w in windows(ctx)] == [48, 480, 960, 0]


def test_dc_offset_is_the_window_mean() -> None:
    signal = np.round(tone(1.0, 8000, hz=1000) + 328).astype(np.int16)
    [window] = windows(analyse(signal, "audio-quality(window_ms=1000)"))
    mean = float(signal.astype(np.int64).sum()) / signal.size / 32768
    assert window["dc_offset"] == round(mean, 6)
    assert window["dc_dbfs"] == round(20 * math.log10(mean), 2)
    [silent] = windows(analyse(np.zeros(RATE, np.int16)))
    assert silent["dc_offset"] == 0 and silent["dc_dbfs"] == -120.0


def test_lost_frames_are_gap_events_and_counted() -> None:
    frames = list(audio_frames(np.round(speech_like(1.0)).astype(np.int16), RATE, 100))
    frames[4] = AudioFrame(frames[4].samples, RATE, 1, frames[4].time_us, 4, True)
    ctx = run(instantiate(parse_spec("audio-quality(window_ms=1000)")), frames)
    assert ctx.events("gap") == [{"event": "gap", "time_us": 400_000}]
    assert windows(ctx)[0]["gaps"] == 1


def with_clicks(base: npt.NDArray[np.float64], positions: list[int], steps: bool) -> npt.NDArray[np.int16]:
    """Impulses (one sample pushed by 8000) and, with `steps`, every other one a step (a 2 ms stretch
    shifted by 8000: a click at each end)."""
    signal = base.copy()
    for number, position in enumerate(positions):
        if steps and number % 2:
            signal[position : position + 96] += 8000
        else:
            signal[position] += 8000
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize(
    ("name", "base", "steps"),
    [
        ("tone", tone(3.0, 12000, hz=1000), True),
        ("low tone", tone(3.0, 20000, hz=60), True),
        ("quiet noise", np.random.default_rng(5).normal(0, 10, 3 * RATE), False),
        ("tones and quiet noise", speech_like(3.0, noise=10), False),
    ],
)
def test_inserted_clicks_are_all_found_within_1_ms(
    name: str, base: npt.NDArray[np.float64], steps: bool
) -> None:
    rng = np.random.default_rng(len(name))
    positions = sorted(int(p) for p in rng.choice(np.arange(2400, 3 * RATE - 2400, 4800), 12, replace=False))
    ctx = analyse(with_clicks(base, positions, steps), "audio-quality(window_ms=1000)")
    found = [event["time_us"] * RATE // 1_000_000 for event in ctx.events("click")]
    expected = [p for n, p in enumerate(positions) for p in ([p, p + 96] if steps and n % 2 else [p])]
    assert len(found) == len(expected), (name, found)
    for position, index in zip(expected, found, strict=True):
        assert abs(index - position) <= RATE // 1000, (name, position, found)
    assert sum(w["clicks"] for w in windows(ctx)) == len(found)


@pytest.mark.parametrize("hz", [50.0, 440.0, 1000.0, 3150.0, 8000.0, 15000.0])
def test_no_clicks_or_dropouts_on_clean_tones(hz: float) -> None:
    signal = np.round(tone(2.0, 30000, hz=hz)).astype(np.int16)
    ctx = analyse(signal)
    assert ctx.events("click") == [] and ctx.events("dropout") == []


@pytest.fixture(scope="module")
def speech_48k(tmp_path_factory: pytest.TempPathFactory) -> npt.NDArray[np.int16]:
    """Half the espeak-ng voices of the DTMF talk-off corpus reading its text, at 48 kHz (about 5 min)."""
    import av

    directory = tmp_path_factory.mktemp("speech48")
    parts = []
    for voice, speed, pitch in VOICES[::2]:
        wav = directory / f"{voice}.wav"
        command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), TEXT]
        subprocess.run(command, check=True, capture_output=True)
        with av.open(str(wav)) as container:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
            frames += resampler.resample(None)
        parts.append(np.concatenate([frame.to_ndarray().ravel() for frame in frames]))
    return np.concatenate(parts).astype(np.int16)


def test_no_clicks_on_speech(speech_48k: npt.NDArray[np.int16]) -> None:
    assert speech_48k.size > 4 * 60 * RATE
    ctx = analyse(speech_48k)
    assert ctx.events("click") == []  # (the Klatt voice does clip at the rails: not asserted here)
