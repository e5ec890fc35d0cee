"""The `silence` processor (worker process): dead air, by level or by the absence of speech.

`mode="level"` (default) makes the decisions of FFmpeg's `silencedetect` with the same parameters: `noise`
as an amplitude ratio (0.001) or in dB ("-60dB"), `duration` in seconds, all channels together (its
`mono=0`), sample for sample (framepool.processors._silence_level). `mode="vad"` reports dead air where no
speech is found for `duration`: it runs a `Vad` inside (the same per-worker Silero session, batched with
the worker's other VAD streams) and the silences are the gaps between its speech segments, from the start
of the stream, that last at least `duration`. Silero runs at 16 kHz, so that mode asks for 16 kHz mono.

Events, times in µs on the frames' clock (framepool.processors._sample_clock):
    {"event": "silence_start", "time_us": ...}                       once the silence has lasted `duration`
    {"event": "silence_end", "time_us": ..., "duration_us": ...}     at the next sound (or speech), or at the
                                                                     end of the stream (as silencedetect)
    {"event": "summary", "silences": ..., "silence_us": ..., "duration_us": ...}                  on close
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from framepool.processors._sample_clock import SampleClock
from framepool.processors._silence_level import LevelSilence, SilenceEdge, duration_samples
from framepool.processors._speech_segments import SpeechEdge
from framepool.processors.api import AudioFormat, AudioFrame, AudioProcessor, ProcessContext
from framepool.processors.vad import Vad, VadParams

TOPIC = "silence"
VAD_SAMPLE_RATE: Literal[16000] = 16000
_DECIBELS = re.compile(r"^\s*(-?\d+(?:\.\d*)?|-?\.\d+)\s*dB\s*$")


def noise_ratio(noise: float | str) -> float:
    """An amplitude ratio from a ratio or a level in dB ("-60dB"), as silencedetect's option reads it."""
    if isinstance(noise, str):
        match = _DECIBELS.match(noise)
        if match is None:
            raise ValueError(f"noise = {noise!r}: expected an amplitude ratio (0.001) or dB (-60dB)")
        return float(10 ** (float(match.group(1)) / 20))
    return float(noise)


class SilenceParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mode: Annotated[
        Literal["level", "vad"], Meta(description="level: silencedetect's rule; vad: no speech.")
    ] = "level"
    noise: Annotated[
        float | str, Meta(description="level: tolerance, amplitude ratio (0 to 1) or dB such as -60dB.")
    ] = 0.001
    duration: Annotated[
        float, Meta(ge=0, le=86_400, description="Seconds of silence before it is reported.")
    ] = 2.0
    sample_rate: Annotated[int, Meta(ge=8000, le=192_000, description="level: rate to measure at.")] = 48000
    channels: Annotated[Literal[1, 2], Meta(description="level: channels measured together.")] = 1
    frame_ms: Annotated[int, Meta(ge=10, le=1000, description="Frame size asked of the source.")] = 100
    threshold: Annotated[float, Meta(ge=0, le=1, description="vad: speech probability threshold.")] = 0.5
    engine: Annotated[Literal["silero", "webrtc"], Meta(description="vad: the VAD engine.")] = "silero"

    def __post_init__(self) -> None:
        if not 0 <= noise_ratio(self.noise) <= 1:
            raise ValueError(f"noise = {self.noise!r}: expected an amplitude ratio from 0 to 1 (0 dB)")


class Silence(AudioProcessor[SilenceParams]):
    name = "silence"

    def __init__(self, params: SilenceParams) -> None:
        super().__init__(params)
        self._ctx: ProcessContext | None = None
        self._silences = 0
        self._silence_us = 0
        self._start_us = 0  # time of the reported silence's start
        self._vad: Vad | None = None
        if params.mode == "vad":
            vad_params = VadParams(
                engine=params.engine,
                sample_rate=VAD_SAMPLE_RATE,
                frame_ms=params.frame_ms,
                threshold=params.threshold,
            )
            self._vad = Vad(vad_params, listener=self._on_speech)
            self._no_speech = NoSpeech(duration_samples(params.duration, VAD_SAMPLE_RATE))
            self._clock = SampleClock(VAD_SAMPLE_RATE)
        else:
            self._level = LevelSilence(
                noise=noise_ratio(params.noise),
                duration_s=params.duration,
                sample_rate=params.sample_rate,
                channels=params.channels,
            )
            self._clock = SampleClock(params.sample_rate)

    @classmethod
    def input_format(cls, params: SilenceParams) -> AudioFormat:
        if params.mode == "vad":
            return AudioFormat(sample_rate=VAD_SAMPLE_RATE, channels=1, frame_ms=params.frame_ms)
        return AudioFormat(sample_rate=params.sample_rate, channels=params.channels, frame_ms=params.frame_ms)

    @classmethod
    def end_of_drain(cls) -> None:
        Vad.end_of_drain()  # the inner Vads' chunks join the worker's batch

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        self._ctx = ctx
        self._clock.advance(frame)
        if self._vad is not None:
            self._vad.process(frame, ctx)
        else:
            self._report(self._level.push(frame.samples))

    def close(self, ctx: ProcessContext) -> None:
        self._ctx = ctx
        if self._vad is not None:
            self._vad.close(ctx)  # its last edges come through _on_speech
            self._report(self._no_speech.finish(self._clock.samples))
        else:
            self._report(self._level.finish())
        total_us = round(self._clock.samples * 1_000_000 / self._clock.sample_rate)
        summary = {"silences": self._silences, "silence_us": self._silence_us, "duration_us": total_us}
        ctx.emit(TOPIC, {"event": "summary", **summary})

    def _on_speech(self, edges: list[SpeechEdge], settled: int) -> None:
        self._report(self._no_speech.push(edges, settled))

    def _report(self, edges: list[SilenceEdge]) -> None:
        if self._ctx is None:
            return
        for edge in edges:
            time_us = self._clock.time_us(edge.sample)
            if edge.kind == "silence_start":
                self._start_us = time_us
                self._ctx.emit(TOPIC, {"event": "silence_start", "time_us": time_us})
                continue
            duration_us = time_us - self._start_us
            self._silences += 1
            self._silence_us += duration_us
            self._ctx.emit(TOPIC, {"event": "silence_end", "time_us": time_us, "duration_us": duration_us})


class NoSpeech:
    """Silences from speech edges: the gaps between speech segments (from the start of the stream) that
    last `duration` samples, each reported once no speech can start within `duration` of its start."""

    def __init__(self, duration: int) -> None:
        self.duration = duration
        self.gap_start: int | None = 0  # start of the current gap in speech; None during speech
        self.reported = False  # the current gap was reported as a silence

    def push(self, edges: list[SpeechEdge], settled: int) -> list[SilenceEdge]:
        silences: list[SilenceEdge] = []
        for edge in edges:
            if edge.kind == "speech_end":
                self.gap_start, self.reported = edge.sample, False
                continue
            self._close_gap(edge.sample, silences)
        if self.gap_start is not None and not self.reported and settled - self.gap_start >= self.duration:
            silences.append(SilenceEdge("silence_start", self.gap_start))
            self.reported = True
        return silences

    def finish(self, length: int) -> list[SilenceEdge]:
        silences: list[SilenceEdge] = []
        self._close_gap(length, silences)
        return silences

    def _close_gap(self, end: int, silences: list[SilenceEdge]) -> None:
        """Speech starts (or the stream ends) at `end`."""
        if self.gap_start is None:
            return
        if not self.reported and end - self.gap_start >= self.duration:
            silences.append(SilenceEdge("silence_start", self.gap_start))
            self.reported = True
        if self.reported:
            silences.append(SilenceEdge("silence_end", end))
        self.gap_start, self.reported = None, False
