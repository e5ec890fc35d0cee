"""The `vad` processor (worker process): speech_start / speech_end events from Silero VAD v6, or webrtcvad.

Silero (the default engine) is one onnxruntime session per worker, shared by every stream there and batched
across them: `process` queues the stream's whole 32 ms chunks, and `end_of_drain`, which the worker calls
once per pass over its input rings, runs one inference per step for all queued streams
(framepool.processors._silero). The probabilities then go through the reference's segmentation: threshold
and negative threshold, minimum speech and silence, padding (framepool.processors._speech_segments), so the
events are the segments silero-vad's `get_speech_timestamps` finds in the same audio, reported as soon as
they are certain. `engine="webrtc"` is the cheap option: webrtcvad's decisions on 10/20/30 ms frames, as
probabilities 0 or 1, through the same segmentation.

Events, times in µs on the frames' clock (framepool.processors._sample_clock):
    {"event": "speech_start", "time_us": ...}
    {"event": "speech_end", "time_us": ..., "duration_us": ...}
    {"event": "probabilities", "time_us": ..., "chunk_us": 32000, "values": [...]}   (emit_probabilities)
    {"event": "summary", ...}                                                          (on close)

Another processor can use a Vad for its own ends (silence by no-speech does): constructed with a
`listener`, the Vad hands it the edges, and the sample before which no later edge can fall, instead of
emitting events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, Protocol

import msgspec
import numpy as np
import numpy.typing as npt
import webrtcvad  # type: ignore[import-untyped]
from msgspec import Meta

from framepool.processors._sample_clock import SampleClock
from framepool.processors._silero import SileroBatch, SileroStream, load_batch
from framepool.processors._speech_segments import SpeechEdge, SpeechSegmenter
from framepool.processors.api import AudioFormat, AudioFrame, AudioProcessor, ProcessContext
from framepool.processors.resource import WorkerResource

TOPIC = "vad"
# A stream never waits for more than this many chunks (~1 s): past it, its chunks run at once without the
# batch, so a worker that has not called end_of_drain yet still gets its results and bounded memory.
MAX_QUEUED_CHUNKS = 32

SpeechListener = Callable[[list[SpeechEdge], int], None]


class VadParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    engine: Annotated[
        Literal["silero", "webrtc"], Meta(description="silero: Silero VAD v6 (ONNX); webrtc: webrtcvad.")
    ] = "silero"
    sample_rate: Annotated[Literal[8000, 16000], Meta(description="Rate the model runs at.")] = 16000
    frame_ms: Annotated[
        int, Meta(ge=10, le=1000, description="Frame size asked of the source (latency vs per-frame cost).")
    ] = 64
    threshold: Annotated[float, Meta(ge=0, le=1, description="Speech starts at this probability.")] = 0.5
    neg_threshold: (
        Annotated[
            float,
            Meta(ge=0, le=1, description="Speech may end below this; default threshold - 0.15 (≥ 0.01)."),
        ]
        | None
    ) = None
    min_speech_ms: Annotated[
        int, Meta(ge=0, le=60_000, description="Segments this short or shorter are dropped.")
    ] = 250
    min_silence_ms: Annotated[
        int, Meta(ge=0, le=60_000, description="Silence that ends a segment lasts this long.")
    ] = 100
    speech_pad_ms: Annotated[int, Meta(ge=0, le=10_000, description="Padding on each side.")] = 30
    emit_probabilities: Annotated[bool, Meta(description="Also emit each chunk's probability.")] = False
    aggressiveness: Annotated[int, Meta(ge=0, le=3, description="webrtc: 0 (least) to 3 (most).")] = 3
    webrtc_frame_ms: Annotated[
        Literal[10, 20, 30], Meta(description="webrtc: the frame each decision covers.")
    ] = 30


class SpeechDetector(Protocol):
    """Probabilities per window of `window` samples, delivered to a callback given at construction."""

    @property
    def window(self) -> int: ...

    def push(self, samples: npt.NDArray[np.int16]) -> None: ...

    def tail(self) -> list[float]:
        """Deliver what is pending, and return the probability of the zero-padded last window, if any."""
        ...


class WebrtcDetector:
    """webrtcvad's decision per frame, as probability 1 or 0, delivered at once (no model to batch)."""

    def __init__(self, params: VadParams, deliver: Callable[[npt.NDArray[np.float32]], None]) -> None:
        self._vad = webrtcvad.Vad(params.aggressiveness)
        self._rate = params.sample_rate
        self._window = params.sample_rate * params.webrtc_frame_ms // 1000
        self._deliver = deliver
        self._partial = np.zeros(0, np.int16)

    @property
    def window(self) -> int:
        return self._window

    def push(self, samples: npt.NDArray[np.int16]) -> None:
        audio = np.concatenate([self._partial, samples.reshape(-1)])
        whole = audio.size - audio.size % self._window
        self._partial = audio[whole:]
        if whole:
            self._deliver(self._decide(audio[:whole]))

    def tail(self) -> list[float]:
        if not self._partial.size:
            return []
        padded = np.zeros(self._window, np.int16)
        padded[: self._partial.size] = self._partial
        self._partial = np.zeros(0, np.int16)
        return [float(value) for value in self._decide(padded)]

    def _decide(self, audio: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
        frames = audio.reshape(-1, self._window)
        return np.array([self._vad.is_speech(frame.tobytes(), self._rate) for frame in frames], np.float32)


class Vad(AudioProcessor[VadParams]):
    name = "vad"
    batch: WorkerResource[SileroBatch] = WorkerResource(load_batch)

    def __init__(self, params: VadParams, *, listener: SpeechListener | None = None) -> None:
        super().__init__(params)
        self._listener = listener
        self._clock = SampleClock(params.sample_rate)
        self._ctx: ProcessContext | None = None
        self._detector: SpeechDetector
        if params.engine == "silero":
            self._detector = SileroStream(type(self).batch.get(), params.sample_rate, self._on_probabilities)
        else:
            self._detector = WebrtcDetector(params, self._on_probabilities)
        self._segments = SpeechSegmenter(
            window=self._detector.window,
            sample_rate=params.sample_rate,
            threshold=params.threshold,
            neg_threshold=params.neg_threshold,
            min_speech_ms=params.min_speech_ms,
            min_silence_ms=params.min_silence_ms,
            speech_pad_ms=params.speech_pad_ms,
        )
        self._segment_start = 0  # sample of the last speech_start
        self._segment_count = 0
        self._speech_us = 0

    @classmethod
    def input_format(cls, params: VadParams) -> AudioFormat:
        return AudioFormat(sample_rate=params.sample_rate, channels=1, frame_ms=params.frame_ms)

    @classmethod
    def end_of_drain(cls) -> None:
        # Only a worker that runs a silero stream holds the model; webrtc streams need no call.
        if cls.batch.loaded:
            cls.batch.get().run()

    @property
    def samples(self) -> int:
        """Samples received so far."""
        return self._clock.samples

    def time_us(self, sample: int) -> int:
        """The time of a sample position of this stream, µs."""
        return self._clock.time_us(sample)

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        self._ctx = ctx
        self._clock.advance(frame)
        self._detector.push(frame.samples)
        if isinstance(self._detector, SileroStream) and len(self._detector.queued) >= MAX_QUEUED_CHUNKS:
            self._detector.flush()

    def close(self, ctx: ProcessContext) -> None:
        self._ctx = ctx
        tail = self._detector.tail()  # delivers what is queued first
        self._emit_probabilities(self._segments.chunks, tail)
        self._report(self._segments.finish(tail, self._clock.samples), final=True)
        if self._listener is None:
            ctx.emit(
                TOPIC,
                {
                    "event": "summary",
                    "engine": self.params.engine,
                    "segments": self._segment_count,
                    "speech_us": self._speech_us,
                    "duration_us": round(self._clock.samples * 1_000_000 / self.params.sample_rate),
                },
            )

    def _on_probabilities(self, probabilities: npt.NDArray[np.float32]) -> None:
        first_chunk = self._segments.chunks
        edges = self._segments.push(probabilities)
        self._emit_probabilities(first_chunk, [float(value) for value in probabilities])
        self._report(edges, final=False)

    def _emit_probabilities(self, first_chunk: int, values: list[float]) -> None:
        if not (self.params.emit_probabilities and values and self._listener is None and self._ctx):
            return
        window = self._detector.window
        payload = {
            "event": "probabilities",
            "time_us": self._clock.time_us(first_chunk * window),
            "chunk_us": round(window * 1_000_000 / self.params.sample_rate),
            "values": values,
        }
        self._ctx.emit(TOPIC, payload)

    def _report(self, edges: list[SpeechEdge], *, final: bool) -> None:
        if self._listener is not None:
            self._listener(edges, self._clock.samples if final else self._segments.settled)
            return
        if self._ctx is None:
            return
        for edge in edges:
            time_us = self._clock.time_us(edge.sample)
            if edge.kind == "speech_start":
                self._segment_start = edge.sample
                self._ctx.emit(TOPIC, {"event": "speech_start", "time_us": time_us})
                continue
            duration_us = time_us - self._clock.time_us(self._segment_start)
            self._segment_count += 1
            self._speech_us += duration_us
            self._ctx.emit(TOPIC, {"event": "speech_end", "time_us": time_us, "duration_us": duration_us})
