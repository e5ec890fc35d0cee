"""`silence` against FFmpeg's silencedetect run on the same samples (PyAV filter graph), and by no-speech
against the VAD's own segments."""

from __future__ import annotations

import gc
import re
from fractions import Fraction

import av
import av.logging
import numpy as np
import pytest
from av.filter import Graph

from framepool.errors import ProcessorError
from framepool.processors import instantiate, parse_spec, resolve
from tests.support.context import RecordingContext, audio_frames, run
from tests.support.speech_corpus import RATE, mix, speech_track

_LINE = re.compile(r"silence_(start|end): (-?[\d.]+)")


def silencedetect(
    samples: np.ndarray, rate: int, noise: str, duration: float, frame_ms: int
) -> list[tuple[str, int]]:
    """silencedetect's events on `samples` ((n, channels) int16) as (event, sample), from its log (which is
    ordered, and has the end of a silence still open at the end of the stream)."""
    channels = samples.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    step = rate * frame_ms // 1000
    av.logging.set_level(av.logging.INFO)
    try:
        with av.logging.Capture(True) as logs:
            graph = Graph()
            source = graph.add_abuffer(
                format="s16", sample_rate=rate, layout=layout, time_base=Fraction(1, rate)
            )
            detector = graph.add("silencedetect", f"noise={noise}:duration={duration:.6f}")
            sink = graph.add("abuffersink")
            source.link_to(detector)
            detector.link_to(sink)
            graph.configure()
            for offset in range(0, samples.shape[0], step):
                chunk = np.ascontiguousarray(samples[offset : offset + step]).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
                frame.sample_rate, frame.pts, frame.time_base = rate, offset, Fraction(1, rate)
                graph.push(frame)
                graph.pull()
            del graph, source, detector, sink  # uninit logs the end of an open silence
            gc.collect()
    finally:
        av.logging.set_level(None)
    found = [_LINE.search(message) for _level, name, message in logs if name == "silencedetect"]
    return [(f"silence_{m.group(1)}", round(float(m.group(2)) * rate)) for m in found if m]


def ours(samples: np.ndarray, rate: int, spec: str, frame_ms: int) -> list[tuple[str, int]]:
    ctx = run(instantiate(parse_spec(spec)), audio_frames(samples, rate, frame_ms))
    return [
        (event["event"], round(event["time_us"] * rate / 1_000_000))
        for event in ctx.events()
        if event["event"] in ("silence_start", "silence_end")
    ]


def near_threshold_signal(rate: int, channels: int, threshold: int, duration: int) -> np.ndarray:
    """Loud audio with quiet runs just shorter than, as long as, and longer than `duration` samples, made of
    values one below the threshold (silent) and broken by single values at the threshold (not silent)."""
    rng = np.random.default_rng(threshold + duration + channels)
    loud = np.full((rate // 4, channels), 1000, np.int16)
    parts = [loud]
    for length in (duration - 1, duration, duration + 1, 2 * duration, duration + 7, 3 * duration):
        quiet = rng.choice([threshold - 1, 1 - threshold, 0], size=(max(1, length), channels)).astype(
            np.int16
        )
        parts += [quiet, loud[: int(rng.integers(1, rate // 8))]]
    at_threshold = np.full((2 * duration, channels), threshold - 1, np.int16)
    at_threshold[duration // 2, channels - 1] = -threshold  # one value on the threshold, one channel
    parts += [at_threshold, loud, np.zeros((duration + rate // 3, channels), np.int16)]  # open at the end
    return np.concatenate(parts)


@pytest.mark.parametrize(
    ("noise", "threshold", "duration", "channels", "rate", "frame_ms"),
    [
        ("0.001", 32, 0.25, 1, 48000, 100),
        ("-60dB", 32, 0.5, 2, 48000, 20),
        ("-40dB", 327, 0.1, 1, 16000, 10),
        ("0.02", 655, 1.0, 2, 16000, 100),
        ("0.001", 32, 0.00002, 1, 48000, 10),  # one sample
    ],
)
def test_same_events_as_silencedetect_near_the_thresholds(
    noise: str, threshold: int, duration: float, channels: int, rate: int, frame_ms: int
) -> None:
    samples = near_threshold_signal(rate, channels, threshold, round(duration * rate))
    expected = silencedetect(samples, rate, noise, duration, frame_ms)
    spec = f"silence(noise={noise}, duration={duration}, channels={channels}, sample_rate={rate})"
    spec = spec[:-1] + f", frame_ms={frame_ms})"
    assert ours(samples, rate, spec, frame_ms) == expected
    # the runs of `duration` and longer, and the final one (its end at the end of the stream)
    assert len(expected) >= 2 * 5


@pytest.mark.parametrize("seed", range(4))
def test_same_events_as_silencedetect_on_random_bursts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(6):
        channels, rate = int(rng.integers(1, 3)), int(rng.choice([16000, 48000]))
        samples = rng.integers(-31, 32, size=(rate * int(rng.integers(2, 12)), channels)).astype(np.int16)
        for _burst in range(int(rng.integers(1, 12))):
            start = int(rng.integers(0, samples.shape[0]))
            samples[start : start + int(rng.integers(1, 3000)), int(rng.integers(channels))] = rng.choice(
                [32, -32, 900]
            )
        duration = float(rng.choice([0.0, 0.01, 0.1, 0.3333, 0.5]))
        frame_ms = int(rng.choice([10, 20, 100]))
        spec = f"silence(duration={duration}, sample_rate={rate}, channels={channels}, frame_ms={frame_ms})"
        assert ours(samples, rate, spec, frame_ms) == silencedetect(
            samples, rate, "0.001", duration, frame_ms
        )


def test_silence_is_reported_in_the_frame_silencedetect_marks() -> None:
    """The silence_start event comes out of the frame whose metadata has lavfi.silence_start (and the end
    likewise), with silence_duration equal to silencedetect's (in samples: its metadata is rounded)."""
    rate, step = 16000, 1600
    samples = np.full((rate * 6, 1), 500, np.int16)
    samples[rate + 123 : 3 * rate + 7] = 3
    samples[4 * rate : 5 * rate + 999] = -20
    graph = Graph()
    source = graph.add_abuffer(format="s16", sample_rate=rate, layout="mono", time_base=Fraction(1, rate))
    detector = graph.add("silencedetect", "noise=0.001:duration=0.75")
    sink = graph.add("abuffersink")
    source.link_to(detector)
    detector.link_to(sink)
    graph.configure()
    processor = instantiate(parse_spec(f"silence(duration=0.75, sample_rate={rate}, frame_ms=100)"))
    ctx = RecordingContext()
    frame_of_event: list[int] = []
    reference_events: list[tuple[int, str, int]] = []
    for index, frame in enumerate(audio_frames(samples, rate, 100)):
        processor.process(frame, ctx)
        frame_of_event += [index] * (len(ctx.results) - len(frame_of_event))
        packet = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(frame.samples.T), format="s16", layout="mono"
        )
        packet.sample_rate, packet.pts, packet.time_base = rate, index * step, Fraction(1, rate)
        graph.push(packet)
        metadata = dict(graph.pull().metadata)
        for key in ("lavfi.silence_start", "lavfi.silence_end"):
            if key in metadata:
                seconds = float(metadata.get("lavfi.silence_duration", 0))
                reference_events.append((index, key[6:], round(seconds * rate)))
    ours = [
        (index, event["event"], round(event.get("duration_us", 0) * rate / 1_000_000))
        for index, event in zip(frame_of_event, ctx.events(), strict=True)
    ]
    assert ours == reference_events and len(reference_events) == 4


def test_no_speech_silences_are_the_gaps_between_the_vads_segments() -> None:
    """mode=vad: the silences are the gaps (from the start of the stream to its end) between the speech
    segments `vad` finds in the same audio, those lasting `duration` or more."""
    track = speech_track(20, seed=3)
    audio = mix(track, "white", 10, seed=4)
    speech = run(instantiate(parse_spec("vad(frame_ms=100)")), audio_frames(audio, RATE, 100)).events()
    edges = [0] + [event["time_us"] for event in speech if "speech" in event["event"]]
    edges.append(round(audio.size * 1_000_000 / RATE))
    gaps = list(zip(edges[0::2], edges[1::2], strict=True))
    expected = [(start, end) for start, end in gaps if end - start >= 800_000]
    ctx = run(instantiate(parse_spec("silence(mode=vad, duration=0.8)")), audio_frames(audio, RATE, 100))
    starts = [event["time_us"] for event in ctx.events("silence_start")]
    ends = [event["time_us"] for event in ctx.events("silence_end")]
    assert list(zip(starts, ends, strict=True)) == expected
    assert 2 <= len(expected) < len(gaps)
    assert all(
        e["duration_us"] == end - start
        for e, (start, end) in zip(ctx.events("silence_end"), expected, strict=True)
    )


@pytest.mark.parametrize("noise", ["loud", "2.0", "+6dB"])
def test_a_bad_noise_level_fails_at_start(noise: str) -> None:
    with pytest.raises(ProcessorError, match="noise"):
        resolve(parse_spec(f"silence(noise={noise})"))
