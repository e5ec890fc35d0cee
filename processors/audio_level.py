"""The `audio-level` processor (worker process): RMS and peak level in dBFS per window.

Reference: 0 dBFS is a full-scale square wave's RMS (int16 full scale is 32768), so a full-scale sine
reads -3.01 dBFS RMS and 0 dBFS peak, as in most meters (AES17 would add 3.01 dB to sine RMS; we don't).
Digital silence has no finite level: it is reported as `floor_db` (default -120), since JSON has no -inf.

Windows are counted in samples, not frames, so a window may span frames of any size and the numbers do
not depend on the frame size the SDK delivers. Per frame the work is a dot product and a max per window
segment (numpy), never a Python loop over samples.

Its input format follows its parameters: mono at `sample_rate`, in frames of `frame_ms`, or by default as
long as the window (10 to 100 ms). `AudioLevel.input_format(params)` is a classmethod, so the supervisor
learns the format without constructing the processor.
"""

from __future__ import annotations

import math
from typing import Annotated

import msgspec
import numpy as np
from msgspec import Meta

from framepool.processors.api import AudioFormat, AudioFrame, AudioProcessor, ProcessContext

TOPIC = "audio-level"
FULL_SCALE = 32768.0


class AudioLevelParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    window_ms: Annotated[int, Meta(ge=1, le=60_000, description="Length of each measurement window.")] = 100
    frame_ms: Annotated[
        int,
        Meta(
            ge=0,
            le=1000,
            multiple_of=10,
            description=(
                "Frame size asked of the source; 0: the window, 10 to 100 ms (results come once per "
                "window anyway)."
            ),
        ),
    ] = 0
    sample_rate: Annotated[int, Meta(ge=8000, le=192_000, description="Sample rate to measure at.")] = 48000
    floor_db: Annotated[float, Meta(le=0, description="Level reported for digital silence.")] = -120.0


def frame_ms(params: AudioLevelParams) -> int:
    """The frame size to ask for. Each frame costs the supervisor an SDK event (~80 µs), whatever its
    length, so by default ask for frames as long as the window (at most 100 ms, at least 10 ms)."""
    if params.frame_ms:
        return params.frame_ms
    return max(10, min(100, params.window_ms // 10 * 10))


def level_dbfs(value: float, floor_db: float) -> float:
    """`value` (linear, relative to int16 full scale) in dBFS, clamped to the floor, rounded to 0.01 dB."""
    if value <= 0.0:
        return floor_db
    return max(floor_db, round(20.0 * math.log10(value / FULL_SCALE), 2))


class AudioLevel(AudioProcessor[AudioLevelParams]):
    name = "audio-level"

    def __init__(self, params: AudioLevelParams) -> None:
        super().__init__(params)
        self._window_samples = max(1, params.sample_rate * params.window_ms // 1000)
        self._sum_squares = 0.0
        self._peak = 0
        self._count = 0  # samples (per channel) in the current window
        self._values = 0  # samples over all channels in the current window
        self._start_us = 0

    @classmethod
    def input_format(cls, params: AudioLevelParams) -> AudioFormat:
        return AudioFormat(sample_rate=params.sample_rate, channels=1, frame_ms=frame_ms(params))

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        samples = frame.samples
        total = samples.shape[0]
        offset = 0
        while offset < total:
            if self._count == 0:
                self._start_us = frame.time_us + offset * 1_000_000 // frame.sample_rate
            take = min(self._window_samples - self._count, total - offset)
            self._accumulate(samples[offset : offset + take])
            self._count += take
            offset += take
            if self._count == self._window_samples:
                self._emit(ctx, partial=False)

    def close(self, ctx: ProcessContext) -> None:
        if self._count:
            self._emit(ctx, partial=True)

    def _accumulate(self, segment: np.ndarray) -> None:
        # int64 avoids int16 overflow in the squares and in abs(-32768).
        wide = segment.astype(np.int64, copy=False).ravel()
        self._sum_squares += float(np.dot(wide, wide))
        self._peak = max(self._peak, int(np.abs(wide).max()))
        self._values += wide.size

    def _emit(self, ctx: ProcessContext, *, partial: bool) -> None:
        rms = math.sqrt(self._sum_squares / self._values) if self._values else 0.0
        payload = {
            "rms_dbfs": level_dbfs(rms, self.params.floor_db),
            "peak_dbfs": level_dbfs(float(self._peak), self.params.floor_db),
            "start_us": self._start_us,
            "duration_ms": round(self._count * 1000 / self.params.sample_rate, 3),
        }
        if partial:
            payload["partial"] = True
        ctx.emit(TOPIC, payload)
        self._sum_squares, self._peak, self._count, self._values = 0.0, 0, 0, 0
