"""The `dtmf` processor (worker process): DTMF digits (ITU-T Q.23 tones) detected to the Q.24 limits.

Reference: ITU-T Q.23 (the 4 x 4 frequency pairs) and Q.24 with the values commonly applied by
administrations and software detectors: a tone pair within ±1.5 % of its nominal frequencies is a digit,
beyond ±3.5 % it is not (limit: `frequency_tolerance_pct`, 2.5); a tone of 40 ms or more is a digit, of
23 ms or less it is not (limit: `min_duration_ms`, 30); a 10 ms interruption does not split a digit and
a 40 ms pause separates two (limit: `pause_ms`, 25); twist up to 8 dB with the low group louder
("normal" twist, as Asterisk's and SpanDSP's detectors name it) and up to 4 dB with the high group
louder ("reverse"), rejected 1 dB beyond (limits: `normal_twist_db` 9, `reverse_twist_db` 5, the 1 dB
covering the measurement in noise); each tone down to `min_level_dbfs` (-40 dBFS RMS, about -34 dBm0 in
the G.711 convention where a full-scale sine is +3.14 dBm0).

How: a Goertzel bank over 13.25 ms blocks every 5 ms screens each block (framepool.processors.
_dtmf_blocks); runs of blocks of one digit become segments that are timed from their edges and
validated over all their blocks, including the talk-off checks (phase coherence, the tones' share of
the energy, second harmonics; framepool.processors._dtmf_segments). Input: 8 kHz mono, 40 ms frames.

Events, on topic `dtmf`: `{"event": "digit", "digit": "5", "start_us", "end_us", "duration_ms",
"low_hz", "high_hz", "low_dbfs", "high_dbfs", "twist_db"}` once a digit's tones have ended (after the
pause), and `{"event": "summary", "digits": "5#", "count": 2}` on close.
"""

from __future__ import annotations

import math
from typing import Annotated

import msgspec
import numpy as np
from msgspec import Meta

from framepool.processors._dtmf_blocks import HOP, SAMPLE_RATE, analyse, screen
from framepool.processors._dtmf_segments import Block, Digit, Limits, SegmentTracker
from framepool.processors.api import AudioFormat, AudioFrame, AudioProcessor, ProcessContext

TOPIC = "dtmf"


class DtmfParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    frame_ms: Annotated[
        int, Meta(ge=10, le=100, multiple_of=10, description="Frame size asked of the source (8 kHz mono).")
    ] = 40
    min_duration_ms: Annotated[
        float, Meta(ge=15, le=200, description="Shortest tone reported (Q.24: 40 ms yes, 23 ms no).")
    ] = 30.0
    pause_ms: Annotated[
        int,
        Meta(
            ge=15,
            le=100,
            description="Absence that ends a digit (Q.24: a 10 ms interruption not, a 40 ms pause does).",
        ),
    ] = 25
    frequency_tolerance_pct: Annotated[
        float, Meta(ge=0.5, le=5, description="Largest offset of either tone (Q.24: 1.5 % yes, 3.5 % no).")
    ] = 2.5
    min_level_dbfs: Annotated[
        float, Meta(ge=-60, le=-10, description="Weakest tone reported, dBFS RMS per tone.")
    ] = -40.0
    normal_twist_db: Annotated[
        float, Meta(ge=0, le=20, description="How much louder the low group may be (Q.24: 8 dB).")
    ] = 9.0
    reverse_twist_db: Annotated[
        float, Meta(ge=0, le=20, description="How much louder the high group may be (Q.24: 4 dB).")
    ] = 5.0


class Dtmf(AudioProcessor[DtmfParams]):
    name = "dtmf"

    def __init__(self, params: DtmfParams) -> None:
        super().__init__(params)
        limits = Limits(
            params.min_duration_ms,
            params.frequency_tolerance_pct,
            params.min_level_dbfs,
            params.normal_twist_db,
            params.reverse_twist_db,
        )
        self._tracker = SegmentTracker(
            limits, pause_blocks=math.ceil(params.pause_ms * SAMPLE_RATE / 1000 / HOP)
        )
        self._pending = np.empty(0)  # samples not yet in a block, from sample index self._pending_start
        self._pending_start = 0
        self._anchor = (0, 0)  # (sample index, time_us) of the latest frame's first sample
        self._digits: list[str] = []

    @classmethod
    def input_format(cls, params: DtmfParams) -> AudioFormat:
        return AudioFormat(sample_rate=SAMPLE_RATE, channels=1, frame_ms=params.frame_ms)

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.gap:  # lost audio: a tone cut by it cannot be timed across the hole
            self._report(self._tracker.finish(), ctx)
            self._pending_start += self._pending.size
            self._pending = np.empty(0)
        self._anchor = (self._pending_start + self._pending.size, frame.time_us)
        samples = np.concatenate((self._pending, frame.samples[:, 0].astype(np.float64)))
        bins, energy = analyse(samples)
        digits = screen(
            bins,
            energy,
            self.params.min_level_dbfs,
            self.params.normal_twist_db,
            self.params.reverse_twist_db,
        )
        for row in range(len(energy)):
            block = Block(self._pending_start + row * HOP, bins[row], float(energy[row]), int(digits[row]))
            self._report(self._tracker.push(block), ctx)
        consumed = len(energy) * HOP
        self._pending = samples[consumed:]
        self._pending_start += consumed

    def close(self, ctx: ProcessContext) -> None:
        self._report(self._tracker.finish(), ctx)
        ctx.emit(TOPIC, {"event": "summary", "digits": "".join(self._digits), "count": len(self._digits)})

    def _time_us(self, sample: float) -> int:
        anchor_sample, anchor_us = self._anchor
        return anchor_us + round((sample - anchor_sample) * 1_000_000 / SAMPLE_RATE)

    def _report(self, digit: Digit | None, ctx: ProcessContext) -> None:
        if digit is None:
            return
        self._digits.append(digit.key)
        low_dbfs, high_dbfs = digit.levels_dbfs
        ctx.emit(
            TOPIC,
            {
                "event": "digit",
                "digit": digit.key,
                "start_us": self._time_us(digit.start_sample),
                "end_us": self._time_us(digit.end_sample),
                "duration_ms": round(digit.duration_ms, 1),
                "low_hz": round(digit.frequencies_hz[0], 1),
                "high_hz": round(digit.frequencies_hz[1], 1),
                "low_dbfs": low_dbfs,
                "high_dbfs": high_dbfs,
                "twist_db": round(low_dbfs - high_dbfs, 2),
            },
        )
