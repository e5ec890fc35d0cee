"""The `dtmf` processor against ITU-T Q.24's accept/reject limits, talk-off corpora (espeak-ng speech,
synthesised music) and multimon-ng's DTMF decoder run on the same audio."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from framepool.processors import AudioFrame, instantiate, parse_spec
from framepool.processors._dtmf_blocks import HIGH_HZ, KEYS, LOW_HZ
from tests.support.context import RecordingContext, audio_frames, run
from tests.support.dtmf_signals import RATE, Tone, sequence
from tests.support.talkoff import music, speech

# White noise 29 dB below each tone at the default -16 dBFS, 21 dB below the weaker one at 8 dB twist.
NOISE_DBFS = -45.0


def digits(signal: npt.NDArray[np.int16], spec: str = "dtmf", frame_ms: int = 40) -> list[dict[str, object]]:
    return run(instantiate(parse_spec(spec)), audio_frames(signal, RATE, frame_ms)).events("digit")


def keys(signal: npt.NDArray[np.int16], spec: str = "dtmf") -> str:
    return "".join(str(event["digit"]) for event in digits(signal, spec))


def grid_failures(cases: list[tuple[Tone, str]], noise_dbfs: float = NOISE_DBFS) -> list[str]:
    """Each tone alone in noise; the cases whose detected digits are not the expected ones."""
    failures = []
    for seed, (tone, expected) in enumerate(cases):
        found = keys(sequence([tone], noise_dbfs=noise_dbfs, seed=seed))
        if found != expected:
            failures.append(f"{tone}: expected {expected!r}, found {found!r}")
    return failures


@pytest.mark.parametrize("offset_pct", [1.5, -1.5])
def test_every_digit_is_detected_with_either_tone_or_both_1_5_percent_off(offset_pct: float) -> None:
    cases = [
        (Tone(key, low_offset_pct=low, high_offset_pct=high), key)
        for key in KEYS
        for low, high in [
            (offset_pct, 0),
            (0, offset_pct),
            (offset_pct, offset_pct),
            (offset_pct, -offset_pct),
        ]
    ]
    assert grid_failures(cases) == []


@pytest.mark.parametrize("offset_pct", [3.5, -3.5])
def test_no_digit_with_either_tone_3_5_percent_off(offset_pct: float) -> None:
    cases = [
        (Tone(key, low_offset_pct=low, high_offset_pct=high), "")
        for key in KEYS
        for low, high in [(offset_pct, 0), (0, offset_pct)]
    ]
    assert grid_failures(cases) == []


def test_40_ms_is_a_digit_and_23_ms_is_not() -> None:
    cases = [(Tone(key, duration_ms=40), key) for key in KEYS] + [
        (Tone(key, duration_ms=23), "") for key in KEYS
    ]
    assert grid_failures(cases) == []


def test_a_10_ms_interruption_does_not_split_a_digit_and_a_40_ms_pause_does() -> None:
    cases = [(Tone(key, duration_ms=90, gap_ms=(40, 10)), key) for key in KEYS]
    assert grid_failures(cases) == []
    for seed, key in enumerate(KEYS):
        signal = sequence([Tone(key, duration_ms=40), Tone(key, duration_ms=40)], pause_ms=40, seed=seed)
        assert keys(signal) == key * 2


def test_twist_8_db_normal_and_4_db_reverse_are_accepted_and_beyond_rejected() -> None:
    """Normal twist: the low group louder; reverse: the high group louder (the convention of Asterisk's and
    SpanDSP's detectors)."""
    cases = [
        case
        for key in KEYS
        for case in [
            (Tone(key, low_dbfs=-16, high_dbfs=-24), key),
            (Tone(key, low_dbfs=-20, high_dbfs=-16), key),
            (Tone(key, low_dbfs=-16, high_dbfs=-26), ""),
            (Tone(key, low_dbfs=-22, high_dbfs=-16), ""),
        ]
    ]
    assert grid_failures(cases) == []


def test_levels_from_near_full_scale_to_minus_36_dbfs_are_accepted_and_below_the_minimum_rejected() -> None:
    """-36 dBFS per tone is about -30 dBm0 (G.711: a full-scale sine is +3.14 dBm0); noise at -55 dBFS."""
    cases = [
        (Tone(key, low_dbfs=level, high_dbfs=level), key if level >= -36 else "")
        for key in KEYS
        for level in (-9.5, -25.0, -36.0, -44.0, -50.0)
    ]
    assert grid_failures(cases, noise_dbfs=-55.0) == []


def test_events_time_the_digit_and_measure_its_tones() -> None:
    tone = Tone("7", duration_ms=70, low_offset_pct=1.0, high_offset_pct=-1.0, low_dbfs=-12, high_dbfs=-15)
    [event] = digits(sequence([tone], pause_ms=100, noise_dbfs=NOISE_DBFS))
    assert event["event"] == "digit" and event["digit"] == "7"
    assert event["start_us"] == pytest.approx(100_000, abs=1000)
    assert event["end_us"] == pytest.approx(170_000, abs=1000)
    assert event["duration_ms"] == pytest.approx(70, abs=1)
    assert event["low_hz"] == pytest.approx(LOW_HZ[2] * 1.01, abs=0.5)
    assert event["high_hz"] == pytest.approx(HIGH_HZ[0] * 0.99, abs=0.5)
    assert event["low_dbfs"] == pytest.approx(-12, abs=0.2)
    assert event["high_dbfs"] == pytest.approx(-15, abs=0.2)
    assert event["twist_db"] == pytest.approx(3, abs=0.3)


def test_results_do_not_depend_on_the_frame_size_and_close_sums_up() -> None:
    signal = sequence([Tone(key, duration_ms=50) for key in "0123456789*#ABCD"], pause_ms=50)
    outputs = [digits(signal, frame_ms=frame_ms) for frame_ms in (10, 20, 40, 100)]
    assert outputs[0] == outputs[1] == outputs[2] == outputs[3]
    ctx = run(instantiate(parse_spec("dtmf")), audio_frames(signal, RATE, 40))
    assert ctx.events("summary") == [{"event": "summary", "digits": "0123456789*#ABCD", "count": 16}]
    assert all(topic == "dtmf" for topic, _ in ctx.results)


def test_lost_frames_end_the_digit_in_progress() -> None:
    signal = sequence([Tone("9", duration_ms=200)], pause_ms=0)
    frames = list(audio_frames(signal, RATE, 40))
    processor = instantiate(parse_spec("dtmf"))
    ctx = RecordingContext()
    for frame in frames[:3]:
        processor.process(frame, ctx)
    later = frames[4]
    processor.process(AudioFrame(later.samples, RATE, 1, later.time_us, later.seq, True), ctx)
    assert [event["digit"] for event in ctx.events("digit")] == ["9"]  # 120 ms before the gap


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("talkoff")


def test_no_digit_in_ten_minutes_of_speech(corpus: Path) -> None:
    """14 espeak-ng voices (male, female, whisper, Klatt; five languages) reading an IVR-like text."""
    signal = speech(corpus)
    assert signal.size >= 10 * 60 * RATE
    assert digits(signal) == []


def test_no_digit_in_ten_minutes_of_music() -> None:
    """Chords of harmonic notes, half of them holding a note pair within 2 to 3 % of a DTMF pair."""
    assert digits(music(600.0)) == []


def multimon(signal: npt.NDArray[np.int16]) -> str:
    """multimon-ng's DTMF digits: it reads raw s16 at 22050 Hz, so the audio is resampled by FFmpeg."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=22050)
    frame = av.AudioFrame.from_ndarray(signal.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    resampled = np.concatenate(
        [out.to_ndarray().ravel() for out in [*resampler.resample(frame), *resampler.resample(None)]]
    )
    command = ["multimon-ng", "-q", "-c", "-a", "DTMF", "-t", "raw", "-"]
    result = subprocess.run(
        command, input=resampled.astype(np.int16).tobytes(), capture_output=True, check=True
    )
    lines = result.stdout.decode().splitlines()
    return "".join(line.split(":", 1)[1].strip() for line in lines if line.startswith("DTMF:"))


def random_keys(rng: np.random.Generator, count: int, *, repeats: bool) -> str:
    """`count` random keys; without repeats no key follows itself (back to back, a repeated key is one
    tone: multimon-ng splits it or not depending on the phase jump between the two)."""
    sent = ""
    while len(sent) < count:
        key = str(rng.choice(list(KEYS)))
        if repeats or not sent.endswith(key):
            sent += key
    return sent


needs_multimon = pytest.mark.skipif(shutil.which("multimon-ng") is None, reason="multimon-ng not installed")


@needs_multimon
@pytest.mark.parametrize(("duration_ms", "pause_ms"), [(50, 50), (60, 80), (100, 40), (200, 200), (60, 0)])
def test_digit_sequences_equal_multimon_ng(duration_ms: float, pause_ms: float) -> None:
    rng = np.random.default_rng(duration_ms + pause_ms)
    for trial in range(4):
        sent = random_keys(rng, 12, repeats=pause_ms > 0)
        levels = rng.uniform(-25, -10, len(sent))  # twist within ±3 dB: inside both detectors' limits
        tones = [
            Tone(key, duration_ms=duration_ms, low_dbfs=level, high_dbfs=level + rng.uniform(-3, 3))
            for key, level in zip(sent, levels, strict=True)
        ]
        signal = sequence(tones, pause_ms=pause_ms, noise_dbfs=NOISE_DBFS, seed=trial)
        assert keys(signal) == multimon(signal) == sent


@needs_multimon
def test_where_multimon_ng_differs_q24_limits_decide() -> None:
    """multimon-ng has no minimum duration or level: it decodes 23 ms tones and -44 dBFS tones, which Q.24
    rejects (and so does this detector)."""
    short = sequence([Tone(key, duration_ms=23) for key in "123456"], noise_dbfs=NOISE_DBFS)
    weak = sequence([Tone(key, low_dbfs=-44, high_dbfs=-44) for key in "123456"], noise_dbfs=-60)
    for signal in (short, weak):
        assert multimon(signal) == "123456"
        assert keys(signal) == ""
