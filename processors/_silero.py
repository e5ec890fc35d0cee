"""Silero VAD v6 on onnxruntime: one session per worker, one inference per step for all its streams (worker
process).

The model and the reference algorithm come from the silero-vad wheel (MIT), installed without its torch
dependency: `silero_vad/data/silero_vad.onnx` is loaded here with onnxruntime, and `OnnxWrapper` in the
wheel's `silero_vad/utils_vad.py` is what this module reproduces. Each call takes a chunk of 512 samples at
16 kHz (256 at 8 kHz) as float in [-1, 1), prefixed by the previous chunk's last 64 (32) samples, the
context (zeros before the first chunk), and the recurrent state (2, batch, 128), zeros at the start; it
returns the chunk's speech probability and the next state.

The batch dimension is free (rows never mix), so `SileroBatch.run` puts the next chunk of every stream that
has one into one call, gathering each stream's context and state into the batch and scattering them back:
on 2 cores one call for 32 streams costs about a third of 32 single calls, and the model is in memory once
per worker instead of once per stream. A stream with several chunks queued takes several steps, its k-th
chunk in step k, so its chunks stay in order whatever the others queued. Streams at 8 kHz and 16 kHz are
batched separately (the rate is one scalar input of the model).

Sessions run with one intra-op and one inter-op thread: workers are pinned to a core each, and threads
would only contend for it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime  # type: ignore[import-untyped]

from framepool.errors import ProcessorError

# Samples per model call and samples of context before them, by sample rate (silero-vad's OnnxWrapper).
CHUNK_SAMPLES = {16000: 512, 8000: 256}
CONTEXT_SAMPLES = {16000: 64, 8000: 32}
STATE_SHAPE = (2, 128)  # per stream; the model's state input is (2, batch, 128)
FULL_SCALE = 32768.0

Probabilities = npt.NDArray[np.float32]


def model_path() -> Path:
    """Where the silero-vad wheel keeps the ONNX model, found without importing the package (its
    `__init__` imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0], "data", "silero_vad.onnx") if locations else Path("silero_vad/data")
    if not path.is_file():
        raise ProcessorError(
            "vad: the Silero VAD model is not installed: pip install --no-deps silero-vad (no torch needed)"
        )
    return path


def open_session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class SileroStream:
    """One stream's context, recurrent state and queued chunks. `push` queues complete chunks; the batch
    calls `deliver` with their probabilities, in order, when it has run them."""

    def __init__(self, batch: SileroBatch, sample_rate: int, deliver: Callable[[Probabilities], None]):
        if sample_rate not in CHUNK_SAMPLES:
            raise ValueError(f"Silero VAD runs at 8000 or 16000 Hz, not {sample_rate}")
        self.batch = batch
        self.sample_rate = sample_rate
        self.chunk = CHUNK_SAMPLES[sample_rate]
        self.context = np.zeros(CONTEXT_SAMPLES[sample_rate], np.float32)
        self.state = np.zeros(STATE_SHAPE, np.float32)
        self.queued: list[npt.NDArray[np.float32]] = []
        self.deliver = deliver
        self._partial = np.zeros(0, np.float32)  # samples short of a whole chunk

    def push(self, samples: npt.NDArray[np.int16]) -> None:
        """Queue the complete chunks of `samples` (mono) after what is left of the previous push."""
        audio = np.concatenate([self._partial, samples.reshape(-1).astype(np.float32) / FULL_SCALE])
        whole = audio.size - audio.size % self.chunk
        if whole:
            self.queued.extend(audio[:whole].reshape(-1, self.chunk))
            self.batch.enqueue(self)
        self._partial = audio[whole:]

    @property
    def window(self) -> int:
        """Samples per probability."""
        return self.chunk

    def flush(self) -> None:
        """Run this stream's queued chunks now (its results delivered), leaving the others queued."""
        self.batch.run_streams(self.sample_rate, [self])

    def tail(self) -> list[float]:
        """The probability of the samples short of a chunk, zero-padded to one as the reference pads the
        end of its input (none if there are none), after delivering the queued chunks'."""
        self.flush()
        if not self._partial.size:
            return []
        padded = np.zeros(self.chunk, np.float32)
        padded[: self._partial.size] = self._partial
        self._partial = np.zeros(0, np.float32)
        self.queued.append(padded)
        probabilities = self.batch.infer(self.sample_rate, [self])
        self.queued.clear()
        return [float(probabilities[0][0])]


class SileroBatch:
    """The worker's Silero session and the streams waiting for it (the WorkerResource `Vad.batch`)."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.session = session
        self._waiting: dict[int, dict[int, SileroStream]] = {rate: {} for rate in CHUNK_SAMPLES}

    def enqueue(self, stream: SileroStream) -> None:
        self._waiting[stream.sample_rate][id(stream)] = stream

    def run(self) -> None:
        """One inference per step for every waiting stream: what `end_of_drain` does."""
        for rate, waiting in self._waiting.items():
            if waiting:
                self.run_streams(rate, list(waiting.values()))

    def run_streams(self, sample_rate: int, streams: list[SileroStream]) -> None:
        """Run `streams`' queued chunks and deliver their probabilities; they stop waiting."""
        waiting = self._waiting[sample_rate]
        for stream in streams:
            waiting.pop(id(stream), None)
        busy = [stream for stream in streams if stream.queued]
        if not busy:
            return
        probabilities = self.infer(sample_rate, busy)
        for stream, values in zip(busy, probabilities, strict=True):
            stream.queued.clear()
            stream.deliver(values)

    def infer(self, sample_rate: int, streams: list[SileroStream]) -> list[Probabilities]:
        """Every queued chunk of `streams` through the model, step k taking the k-th chunk of each stream
        that has one; updates their contexts and states. Returns the probabilities per stream."""
        results = [np.empty(len(stream.queued), np.float32) for stream in streams]
        rate = np.array(sample_rate, dtype=np.int64)
        for step in range(max(len(stream.queued) for stream in streams)):
            rows = [row for row, stream in enumerate(streams) if len(stream.queued) > step]
            active = [streams[row] for row in rows]
            batch = np.stack([np.concatenate([stream.context, stream.queued[step]]) for stream in active])
            state = np.stack([stream.state for stream in active], axis=1)
            output, next_state = self._call(batch, state, rate)
            context = batch.shape[1] - active[0].chunk
            for column, (row, stream) in enumerate(zip(rows, active, strict=True)):
                results[row][step] = output[column, 0]
                stream.state = np.ascontiguousarray(next_state[:, column])
                stream.context = batch[column, -context:].copy()
        return results

    def _call(self, batch: Any, state: Any, rate: Any) -> tuple[npt.NDArray[np.float32], Any]:
        output, next_state = self.session.run(None, {"input": batch, "state": state, "sr": rate})
        return np.asarray(output, np.float32), np.asarray(next_state, np.float32)


def load_batch() -> SileroBatch:
    """The WorkerResource loader: the model file, one session, no streams yet."""
    return SileroBatch(open_session(model_path()))
