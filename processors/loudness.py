"""The `loudness` processor (worker process): ITU-R BS.1770-4 / EBU R 128 loudness meter.

Momentary (400 ms), short-term (3 s) and integrated loudness (gated: -70 LUFS absolute, -10 LU
relative, over 400 ms blocks with 75 % overlap) in LUFS, loudness range (EBU Tech 3342) in LU, the
maximum momentary and short-term loudness, and the true peak (BS.1770-4 Annex 2, 4× oversampling) in
dBTP. A reading every `emit_ms`, and a summary (`{"event": "summary", ...}`) when the stream ends.

Channels: a stereo source is measured as stereo (both channels weighted 1.0), a mono one as mono, or as
dual mono with `dual_mono` (the one channel counted twice, +3 dB, as a mono programme played on two
loudspeakers is heard). `channels=0` (the default) takes the source's layout; more than two channels are
each weighted 1.0 (LiveKit tracks are mono or stereo; BS.1770's surround weights need a known layout).

The signal is cut into 10 ms hops counted from the first sample (the K-weighting and true peak run on
whole frames, see `_loudness_filters`; the windows and gates on hops, see `_loudness_gates`): a frame of
any size gives the same numbers, and samples short of a whole hop wait for the next frame. JSON has no
-inf: a value that does not exist yet (a window not yet full, no block above the gates) is null; a
measured one below `floor_db` (digital silence) reads `floor_db`. Values are rounded to 0.01.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from msgspec import Meta

from framepool.processors._loudness_filters import BlockFilter, TruePeakMeter, block_length
from framepool.processors._loudness_gates import HOPS_PER_SECOND, LoudnessTimeScales, loudness
from framepool.processors.api import AudioFormat, AudioFrame, AudioProcessor, ProcessContext

TOPIC = "loudness"
FULL_SCALE = 32768.0
SampleRate = Literal[8000, 16000, 24000, 32000, 44100, 48000, 96000]


class LoudnessParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sample_rate: Annotated[SampleRate, Meta(description="Sample rate to measure at.")] = 48000
    channels: Annotated[
        int, Meta(ge=0, le=2, description="Channels asked of the source; 0: as the source (1 or 2).")
    ] = 0
    frame_ms: Annotated[
        int,
        Meta(
            ge=10,
            le=1000,
            multiple_of=10,
            description="Frame size asked of the source; the results do not depend on it (10 ms hops).",
        ),
    ] = 100
    emit_ms: Annotated[
        int, Meta(ge=100, le=60_000, multiple_of=10, description="Interval between readings.")
    ] = 1000
    dual_mono: Annotated[bool, Meta(description="Measure a mono source as dual mono (+3 dB).")] = False
    true_peak: Annotated[bool, Meta(description="Measure the true peak (4× oversampling).")] = True
    floor_db: Annotated[float, Meta(le=0, description="Level reported for digital silence.")] = -120.0


class Loudness(AudioProcessor[LoudnessParams]):
    name = "loudness"

    def __init__(self, params: LoudnessParams) -> None:
        super().__init__(params)
        self._hop = params.sample_rate // HOPS_PER_SECOND
        self._emit_hops = params.emit_ms * HOPS_PER_SECOND // 1000
        self._scales = LoudnessTimeScales()
        self._channels = 0  # learnt from the first frame
        self._weights = np.zeros(0)
        self._filter: BlockFilter | None = None
        self._peak: TruePeakMeter | None = None
        self._carry = np.zeros((0, 1), np.int16)  # samples short of a whole hop
        self._time_us = 0  # the end of the last hop measured
        self._gaps = 0

    @classmethod
    def input_format(cls, params: LoudnessParams) -> AudioFormat:
        return AudioFormat(sample_rate=params.sample_rate, channels=params.channels, frame_ms=params.frame_ms)

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.channels != self._channels:
            self._start_layout(frame.channels, ctx)
        self._gaps += frame.gap
        carried = self._carry.shape[0]
        samples = np.concatenate([self._carry, frame.samples]) if carried else frame.samples
        usable = samples.shape[0] // self._hop * self._hop
        offset = 0
        while offset < usable:
            # Segments end on reading boundaries, so each reading holds exactly the hops before it.
            hops = min(self._emit_hops - self._scales.hops % self._emit_hops, (usable - offset) // self._hop)
            self._measure(samples[offset : offset + hops * self._hop])
            offset += hops * self._hop
            self._time_us = frame.time_us + (offset - carried) * 1_000_000 // frame.sample_rate
            if self._scales.hops % self._emit_hops == 0:
                ctx.emit(TOPIC, self._reading())
        self._carry = samples[usable:].copy()

    def close(self, ctx: ProcessContext) -> None:
        if self._peak is not None and self._carry.shape[0] and self.params.true_peak:
            self._peak(self._carry.T / FULL_SCALE)  # too short for a hop, not for a peak
        ctx.emit(TOPIC, self._summary())

    def _start_layout(self, channels: int, ctx: ProcessContext) -> None:
        """Filters for `channels`; a layout change mid-stream restarts the filters, not the statistics."""
        if self._channels:
            ctx.log.warning("loudness: channels changed from %d to %d", self._channels, channels)
        self._channels = channels
        dual = channels == 1 and self.params.dual_mono
        self._weights = np.full(channels, 2.0 if dual else 1.0)
        self._filter = BlockFilter(self.params.sample_rate, block_length(self._hop), channels)
        self._peak = TruePeakMeter(channels) if self.params.true_peak else None
        self._carry = np.zeros((0, channels), np.int16)

    def _measure(self, samples: np.ndarray) -> None:
        """K-weight and peak-meter whole hops of `samples` (n, channels) and add them to the time scales."""
        assert self._filter is not None
        x = samples.T / FULL_SCALE
        if self._peak is not None:
            self._peak(x)
        weighted = self._filter(x)
        squares = (weighted * weighted).reshape(self._channels, -1, self._hop).mean(axis=2)
        self._scales.add(self._weights @ squares)

    def _level(self, energy: float) -> float | None:
        """A loudness (mean square in, LUFS out) for JSON: None if not measured, the floor if below it."""
        if math.isnan(energy):
            return None
        return round(max(self.params.floor_db, loudness(energy)), 2)

    def _peak_dbtp(self, linear: float) -> float:
        value = 20.0 * math.log10(linear) if linear > 0.0 else -math.inf
        return round(max(self.params.floor_db, value), 2)

    def _reading(self) -> dict[str, Any]:
        scales = self._scales
        integrated = scales.integrated()
        lra = scales.loudness_range()
        return {
            "momentary_lufs": self._level(scales.momentary),
            "short_term_lufs": self._level(scales.short_term),
            "integrated_lufs": None if integrated is None else round(integrated[0], 2),
            "lra_lu": None if lra is None else round(lra[0], 2),
            "true_peak_dbtp": None if self._peak is None else self._peak_dbtp(float(self._peak.peaks.max())),
            "max_momentary_lufs": self._level(scales.max_momentary),
            "max_short_term_lufs": self._level(scales.max_short_term),
            "time_us": self._time_us,
        }

    def _summary(self) -> dict[str, Any]:
        """The programme's figures: the last reading's, with the gate and the LRA percentiles."""
        reading = self._reading()
        integrated = self._scales.integrated()
        lra = self._scales.loudness_range()
        peaks = [] if self._peak is None else [self._peak_dbtp(float(p)) for p in self._peak.peaks]
        return {
            "event": "summary",
            "integrated_lufs": reading["integrated_lufs"],
            "relative_threshold_lufs": None if integrated is None else round(integrated[1], 2),
            "lra_lu": reading["lra_lu"],
            "lra_low_lufs": None if lra is None else round(lra[1], 2),
            "lra_high_lufs": None if lra is None else round(lra[2], 2),
            "true_peak_dbtp": reading["true_peak_dbtp"] if peaks else None,
            "true_peak_per_channel_dbtp": peaks,
            "max_momentary_lufs": reading["max_momentary_lufs"],
            "max_short_term_lufs": reading["max_short_term_lufs"],
            "duration_ms": self._scales.hops * 1000 // HOPS_PER_SECOND,
            "gaps": self._gaps,
            "time_us": self._time_us,
        }
