"""The `loudness` processor against EBU Tech 3341 / 3342 (the minimum-requirements cases synthesised from
their published definitions, within the EBU tolerances) and against FFmpeg's ebur128 filter and
libebur128, run here on the same samples (speech from espeak-ng and synthetic music, mono and stereo)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest

from framepool.errors import ProcessorError
from framepool.processors import instantiate, parse_spec, resolve
from framepool.processors._loudness_filters import (
    HIGH_PASS_48K,
    SHELF_48K,
    BlockFilter,
    block_length,
    derived_k_weighting,
    k_weighting,
)
from tests.support.context import audio_frames, run
from tests.support.loudness_refs import (
    Readings,
    Signal,
    as_float,
    espeak_speech,
    ffmpeg_ebur128,
    libebur128,
    pcm16,
    silence,
    synthetic_music,
    tone,
)

FS = 48000
SPEECH_TEXT = (
    "Loudness is measured in loudness units relative to full scale. The quick brown fox jumps over the "
    "lazy dog, and the meter follows every word. "
)


def measure(signal: Signal, spec: str = "loudness(emit_ms=100)", frame_ms: int = 100) -> list[dict[str, Any]]:
    """Every payload the processor emits for `signal` (float, full scale 1.0), the summary last."""
    processor = instantiate(parse_spec(spec))
    rate = processor.params.sample_rate  # type: ignore[attr-defined]
    ctx = run(processor, audio_frames(pcm16(signal), rate, frame_ms))
    return [payload for _topic, payload in ctx.results]


def readings(payloads: list[dict[str, Any]], key: str) -> list[float | None]:
    return [payload[key] for payload in payloads if "event" not in payload]


def summary(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    assert payloads[-1]["event"] == "summary"
    return payloads[-1]


def concat(*parts: Signal) -> Signal:
    return np.concatenate(parts)


def direct_k_weighting(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """The two biquads, one sample at a time (transposed direct form II)."""
    y = x.copy()
    for (b0, b1, b2), (_, a1, a2) in k_weighting(sample_rate):
        out = np.empty_like(y)
        s1 = s2 = 0.0
        for n, value in enumerate(y):
            out[n] = b0 * value + s1
            s1 = b1 * value - a1 * out[n] + s2
            s2 = b2 * value - a2 * out[n]
        y = out
    return y


@pytest.mark.parametrize("sample_rate", [48000, 44100, 16000])
def test_block_filter_equals_the_sample_by_sample_recursion(sample_rate: int) -> None:
    hop = sample_rate // 100
    x = np.random.default_rng(1).standard_normal((2, hop * 23)) * 0.3
    block_filter = BlockFilter(sample_rate, block_length(hop), 2)
    cuts = [0, hop * 5, hop * 6, hop * 23]  # frames of several sizes carry the state across
    out = np.concatenate([block_filter(x[:, a:b]) for a, b in itertools.pairwise(cuts)], axis=1)
    expected = np.stack([direct_k_weighting(channel, sample_rate) for channel in x])
    assert np.abs(out - expected).max() < 1e-9


def test_coefficients_derived_at_48k_match_the_published_ones() -> None:
    """The derivation used at other rates reproduces BS.1770 Table 1 at 48 kHz."""
    shelf, high_pass = derived_k_weighting(48000)
    for derived, published in ((shelf, SHELF_48K), (high_pass, HIGH_PASS_48K)):
        assert np.allclose(derived, published, rtol=0, atol=1e-12)


# EBU Tech 3341 Table 1, cases 1-5 (6 is 5.0 surround; 7 and 8 are recorded programmes).
@pytest.mark.parametrize(
    ("case", "signal", "expected"),
    [
        (1, lambda: tone(-23, 20), -23.0),
        (2, lambda: tone(-33, 20), -33.0),
        (3, lambda: concat(tone(-36, 10), tone(-23, 60), tone(-36, 10)), -23.0),
        (4, lambda: concat(tone(-72, 10), tone(-36, 10), tone(-23, 60), tone(-36, 10), tone(-72, 10)), -23.0),
        (5, lambda: concat(tone(-26, 20), tone(-20, 20.1), tone(-26, 20)), -23.0),
    ],
)
def test_tech_3341_integrated(case: int, signal: Any, expected: float) -> None:
    payloads = measure(signal(), "loudness(emit_ms=1000)")
    assert summary(payloads)["integrated_lufs"] == pytest.approx(expected, abs=0.1)
    if case in (1, 2):  # M and S too, from the first full window on
        for key in ("momentary_lufs", "short_term_lufs"):
            values = readings(payloads, key)[3:]
            assert values and all(value == pytest.approx(expected, abs=0.1) for value in values)


def test_tech_3341_case_9_short_term_constant_after_3_s() -> None:
    signal = np.concatenate([concat(tone(-20, 1.34), tone(-30, 1.66))] * 5)
    short_term = readings(measure(signal), "short_term_lufs")  # every 100 ms
    assert short_term[:29] == [None] * 29
    assert all(value == pytest.approx(-23.0, abs=0.1) for value in short_term[29:])


def test_tech_3341_case_12_momentary_constant_after_1_s() -> None:
    signal = np.concatenate([concat(tone(-20, 0.18), tone(-30, 0.22))] * 25)
    momentary = readings(measure(signal), "momentary_lufs")
    assert all(value == pytest.approx(-23.0, abs=0.1) for value in momentary[9:])


@pytest.mark.parametrize("i", range(20))
def test_tech_3341_case_10_max_short_term_wherever_the_burst_falls(i: int) -> None:
    signal = concat(silence(i * 0.15), tone(-23, 3), silence(1))
    assert summary(measure(signal))["max_short_term_lufs"] == pytest.approx(-23.0, abs=0.1)


@pytest.mark.parametrize("i", range(20))
def test_tech_3341_case_13_max_momentary_wherever_the_burst_falls(i: int) -> None:
    signal = concat(silence(i * 0.02), tone(-23, 0.4), silence(1))
    assert summary(measure(signal))["max_momentary_lufs"] == pytest.approx(-23.0, abs=0.1)


def test_tech_3341_case_11_live_max_short_term_successive_values() -> None:
    signal = concat(*(concat(silence(i * 0.15), tone(-38 + i, 3), silence(3 - i * 0.15)) for i in range(20)))
    maxima = readings(measure(signal, "loudness(emit_ms=1000)"), "max_short_term_lufs")
    at_segment_ends = maxima[5::6]  # each segment lasts 6 s; reading k is at k + 1 seconds
    assert at_segment_ends == pytest.approx([-38.0 + i for i in range(20)], abs=0.1)


def test_tech_3341_case_14_live_max_momentary_successive_values() -> None:
    signal = concat(
        *(concat(silence(i * 0.02), tone(-38 + i, 0.4), silence(0.4 - i * 0.02)) for i in range(20))
    )
    maxima = readings(measure(signal), "max_momentary_lufs")
    at_segment_ends = maxima[7::8]  # each segment lasts 800 ms; reading k is at (k + 1) 100 ms
    assert at_segment_ends == pytest.approx([-38.0 + i for i in range(20)], abs=0.1)


def tapered_sine(frequency: float, amplitude: float, phase_deg: float, seconds: float = 1.0) -> Signal:
    """Tech 3341 cases 15-19: a stereo sine with 10 ms fades in and out."""
    t = np.arange(round(seconds * FS)) / FS
    wave = amplitude * np.sin(2 * np.pi * frequency * t + np.radians(phase_deg))
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
    return np.repeat((wave * fade)[:, None], 2, axis=1)


def burst_between_sines(offset: int) -> Signal:
    """Tech 3341 cases 20-23: at 4 fs, a 0.5 FFS fs/6 sine containing one period of a 1.0 FFS fs/4 sine
    (inserted at a zero crossing, so the phase is continuous on both sides), low-pass filtered below
    fs/2 and taken every 4th sample from `offset`."""
    periods = 600  # of fs/6: 24 samples each at 4 fs, 0.3 s on each side
    carrier = 0.5 * np.sin(2 * np.pi * np.arange(periods * 24) / 24)
    burst = np.sin(2 * np.pi * np.arange(16) / 16)
    upsampled = np.concatenate([carrier, burst, carrier])
    upsampled *= np.minimum(1.0, np.minimum(np.arange(upsampled.size), np.arange(upsampled.size)[::-1]) / 960)
    taps = np.arange(-256, 257)
    cutoff = 21000 / (4 * FS)  # below fs/2, so every offset samples the same band-limited waveform
    anti_alias = np.sinc(2 * cutoff * taps) * np.kaiser(taps.size, 10.0)
    filtered = np.convolve(upsampled, anti_alias / anti_alias.sum(), mode="same")
    return np.repeat(filtered[offset::4, None], 2, axis=1)


TRUE_PEAK_CASES = [
    (15, lambda: tapered_sine(FS / 4, 0.5, 0.0), -6.0),
    (16, lambda: tapered_sine(FS / 4, 0.5, 45.0), -6.0),
    (17, lambda: tapered_sine(FS / 6, 0.5, 60.0), -6.0),
    (18, lambda: tapered_sine(FS / 8, 0.5, 67.5), -6.0),
    (19, lambda: tapered_sine(FS / 4, 1.41, 45.0), 3.0),
    (20, lambda: burst_between_sines(0), 0.0),
    (21, lambda: burst_between_sines(1), 0.0),
    (22, lambda: burst_between_sines(2), 0.0),
    (23, lambda: burst_between_sines(3), 0.0),
]


@pytest.mark.parametrize(
    ("case", "signal", "expected"), TRUE_PEAK_CASES, ids=[str(c[0]) for c in TRUE_PEAK_CASES]
)
def test_tech_3341_true_peak(case: int, signal: Any, expected: float) -> None:
    """Max true peak within +0.2 / -0.4 dB of the case's value (the EBU tolerance)."""
    true_peak = summary(measure(signal()))["true_peak_dbtp"]
    assert expected - 0.4 <= true_peak <= expected + 0.2


# EBU Tech 3342 Table 1, cases 1-4 (5 and 6 are recorded programmes).
@pytest.mark.parametrize(
    ("levels", "expected"),
    [((-20, -30), 10.0), ((-20, -15), 5.0), ((-40, -20), 20.0), ((-50, -35, -20, -35, -50), 15.0)],
)
def test_tech_3342_loudness_range(levels: tuple[int, ...], expected: float) -> None:
    signal = concat(*(tone(level, 20) for level in levels))
    assert summary(measure(signal, "loudness(emit_ms=1000)"))["lra_lu"] == pytest.approx(expected, abs=1.0)


@pytest.fixture(scope="module")
def speech() -> Signal:
    """espeak-ng speech at three levels with pauses, mono (~30 s)."""
    voice = espeak_speech(SPEECH_TEXT)
    pause = silence(0.7, channels=1)
    return concat(0.6 * voice, pause, 0.15 * voice, pause, 0.9 * voice)


def programmes(speech: Signal) -> dict[str, tuple[Signal, bool]]:
    """name -> (signal, dual_mono)."""
    music = synthetic_music(20.0)
    delayed = np.concatenate([np.zeros((2400, 1)), speech[:-2400]])
    return {
        "speech-mono": (speech, False),
        "speech-dual-mono": (speech, True),
        "speech-stereo": (np.concatenate([speech, 0.5 * delayed], axis=1), False),
        "music-stereo": (music, False),
        "music-mono": (music[:, :1], False),
    }


def deviations(mine: list[dict[str, Any]], reference: Readings) -> dict[str, float]:
    """Largest |processor - reference| per measure; M and S compared every 100 ms where both exist and the
    reference is above the -70 LUFS gate (below it one floors and the other does not)."""
    result: dict[str, float] = {}
    for key, series in (("momentary_lufs", reference.momentary), ("short_term_lufs", reference.short_term)):
        pairs = [
            (value, ref)
            for value, ref in zip(readings(mine, key), series, strict=False)
            if value is not None and ref > -70
        ]
        assert len(pairs) > 50
        result[key] = max(abs(value - ref) for value, ref in pairs)
    end = summary(mine)
    result["integrated_lufs"] = abs(end["integrated_lufs"] - reference.integrated)
    result["lra_lu"] = abs(end["lra_lu"] - reference.lra)
    result["true_peak_dbtp"] = abs(end["true_peak_dbtp"] - reference.true_peak_dbtp)
    return result


@pytest.mark.parametrize(
    "name", ["speech-mono", "speech-dual-mono", "speech-stereo", "music-stereo", "music-mono"]
)
def test_agrees_with_ffmpeg_and_libebur128(speech: Signal, name: str) -> None:
    """M and S every 100 ms and I within 0.1 LU of both; LRA within 0.1 LU of FFmpeg (which also samples
    short-term loudness at 10 Hz) and 0.5 LU of libebur128 (which samples it once a second); true peak
    within 0.2 dB of both (three different 4× interpolators)."""
    signal, dual_mono = programmes(speech)[name]
    exact = as_float(pcm16(signal))  # the references measure the int16 samples the processor gets
    mine = measure(signal, f"loudness(emit_ms=100, dual_mono={'true' if dual_mono else 'false'})")
    for reference, lra_tolerance in (
        (ffmpeg_ebur128(exact, FS, dual_mono=dual_mono), 0.1),
        (libebur128(exact, FS, dual_mono=dual_mono), 0.5),
    ):
        found = deviations(mine, reference)
        assert found["momentary_lufs"] <= 0.1 and found["short_term_lufs"] <= 0.1, found
        assert found["integrated_lufs"] <= 0.1 and found["lra_lu"] <= lra_tolerance, found
        assert found["true_peak_dbtp"] <= 0.2, found
        # The maxima are taken every 10 ms, the references' series every 100 ms: never below theirs.
        assert summary(mine)["max_momentary_lufs"] >= max(reference.momentary) - 0.01
        assert summary(mine)["max_short_term_lufs"] >= max(reference.short_term) - 0.01


def test_agrees_with_ffmpeg_and_libebur128_at_44_1_khz() -> None:
    """At 44.1 kHz the K-weighting is derived, not published: all three derive it the same way."""
    signal = synthetic_music(15.0, sample_rate=44100)
    exact = as_float(pcm16(signal))
    mine = measure(signal, "loudness(sample_rate=44100, emit_ms=100)")
    for reference in (ffmpeg_ebur128(exact, 44100), libebur128(exact, 44100)):
        found = deviations(mine, reference)
        assert max(found["momentary_lufs"], found["short_term_lufs"], found["integrated_lufs"]) <= 0.1, found


def test_the_frame_size_does_not_change_the_numbers(speech: Signal) -> None:
    """10 ms hops are counted in samples: frames of any size, even ones that split hops, agree."""
    signal = speech[: 12 * FS]
    baseline = measure(signal, frame_ms=100)
    for frame_ms in (10, 30, 70, 1000):
        other = measure(signal, frame_ms=frame_ms)
        assert len(other) == len(baseline)
        for payload, expected in zip(other, baseline, strict=True):
            assert payload.keys() == expected.keys()
            for key, value in expected.items():
                assert payload[key] == (
                    value if not isinstance(value, float) else pytest.approx(value, abs=0.011)
                )


def test_mono_is_measured_as_mono_and_dual_mono_on_request() -> None:
    """A -23 dBFS tone: -23 LUFS on both channels of a stereo source, -26 LUFS as mono, -23 as dual mono."""
    stereo = summary(measure(tone(-23, 5)))["integrated_lufs"]
    mono = summary(measure(tone(-23, 5, channels=1)))["integrated_lufs"]
    dual = summary(measure(tone(-23, 5, channels=1), "loudness(dual_mono=true)"))["integrated_lufs"]
    assert stereo == pytest.approx(-23.0, abs=0.05)
    assert mono == pytest.approx(-26.01, abs=0.05)
    assert dual == pytest.approx(stereo, abs=0.01)


def test_silence_reads_the_floor_or_null_and_json_has_no_infinity() -> None:
    payloads = measure(silence(4.0), "loudness(emit_ms=1000)")
    first, last = payloads[0], payloads[-2]
    assert first["momentary_lufs"] == -120.0 and first["short_term_lufs"] is None  # 3 s not yet seen
    assert last["short_term_lufs"] == -120.0 and last["true_peak_dbtp"] == -120.0
    assert last["integrated_lufs"] is None and last["lra_lu"] is None  # nothing above the gates
    end = summary(payloads)
    assert end["duration_ms"] == 4000 and end["time_us"] == 4_000_000
    json.dumps(payloads, allow_nan=False)


def test_readings_come_every_emit_ms_with_media_times() -> None:
    payloads = measure(tone(-23, 3.05), "loudness(emit_ms=500)", frame_ms=20)
    times = [payload["time_us"] for payload in payloads if "event" not in payload]
    assert times == [500_000 * k for k in range(1, 7)]
    assert summary(payloads)["time_us"] == 3_050_000 and summary(payloads)["duration_ms"] == 3050


def test_format_follows_the_parameters_and_bad_ones_are_refused() -> None:
    fmt = resolve(parse_spec("loudness")).fmt
    assert (fmt.sample_rate, fmt.channels, fmt.frame_ms) == (48000, 0, 100)  # type: ignore[union-attr]
    fmt = resolve(parse_spec("loudness(sample_rate=44100, channels=2, frame_ms=20)")).fmt
    assert (fmt.sample_rate, fmt.channels, fmt.frame_ms) == (44100, 2, 20)  # type: ignore[union-attr]
    for bad in ("sample_rate=22050", "emit_ms=105", "channels=3", "true_peak=maybe"):
        with pytest.raises(ProcessorError, match=bad.split("=")[0]):
            resolve(parse_spec(f"loudness({bad})"))
