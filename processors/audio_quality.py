"""The `audio-quality` processor (worker process): clipping, dropouts, clicks, DC offset and lost frames,
per window and as events.

What each measure is, exactly (the tests count samples):
- Clipping: a sample is clipped when it is at or beyond the clip level: x >= `clip_level` or
  x <= -`clip_level` - 1 (default 32767: exactly the int16 rails, 32767 and -32768). A clip run is a run
  of at least `min_clip_run` consecutive clipped samples. Events: `clip_start` at the first sample of
  a run, `clip_end` once no run has followed for `hold_ms` (its `end_us` is the end of the last run,
  with the episode's runs and clipped samples).
- Dropouts: a run of exact zeros of `min_dropout_ms` to `max_dropout_ms` with non-silent audio (RMS
  above `silence_dbfs` over the 10 ms) on both sides; digital silence and muted stretches are not
  dropouts. Event `dropout`, once the 10 ms after it are in.
- Clicks: a fourth-difference outlier against the local median absolute deviation
  (framepool.processors._quality_detectors.ClickDetector): `click_factor` robust standard deviations
  and at least `click_floor_dbfs`. Event `click` at its sample.
- DC offset: the window's mean as a fraction of full scale, and in dBFS.
- Gaps: frames lost before this one (the ring's GAP flag). Event `gap` at the frame's time.

Per window (`window_ms`): `{"start_us", "duration_ms", "clipped_samples", "clip_runs",
"longest_clip_run", "dropouts", "dropout_samples", "clicks", "dc_offset", "dc_dbfs", "gaps"}`. Clipped
samples and the DC offset belong to the window that holds the samples; a run, a dropout or a click to
the window holding its first sample (its position), or, if that window was already reported when the
event was confirmed, to the next one reported.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec
import numpy as np
from msgspec import Meta

from framepool.processors._quality_detectors import ClickDetector, Run, RunFinder, Samples
from framepool.processors.api import AudioFormat, AudioFrame, AudioProcessor, ProcessContext

TOPIC = "audio-quality"
FULL_SCALE = 32768.0
CONTEXT_MS = 10  # audio on each side of a zero run that decides whether it is a dropout
CLICK_BLOCK_MS = 5
CLICK_MERGE_MS = 1


class AudioQualityParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    window_ms: Annotated[int, Meta(ge=10, le=60_000, description="Length of each report window.")] = 1000
    frame_ms: Annotated[
        int, Meta(ge=0, le=100, multiple_of=10, description="Frame size; 0: the window, 10 to 100 ms.")
    ] = 0
    sample_rate: Annotated[int, Meta(ge=8000, le=192_000, description="Sample rate to analyse at.")] = 48000
    clip_level: Annotated[
        int, Meta(ge=1, le=32767, description="Clipped: x >= clip_level or x <= -clip_level - 1.")
    ] = 32767
    min_clip_run: Annotated[int, Meta(ge=1, le=10_000, description="Clipped samples in a row for a run.")] = 3
    hold_ms: Annotated[
        int, Meta(ge=0, le=10_000, description="A clipping episode ends this long after its last run.")
    ] = 200
    min_dropout_ms: Annotated[float, Meta(ge=0.1, le=1000, description="Shortest zero run reported.")] = 1.0
    max_dropout_ms: Annotated[float, Meta(ge=1, le=10_000, description="Longer zero runs are silence.")] = (
        1000.0
    )
    silence_dbfs: Annotated[float, Meta(le=0, description="Audio around a dropout must be louder.")] = -50.0
    click_factor: Annotated[float, Meta(ge=3, le=1000, description="Outlier threshold, robust std devs.")] = (
        250.0
    )
    click_floor_dbfs: Annotated[
        float, Meta(le=0, description="Smallest second difference of a click.")
    ] = -50.0
    floor_db: Annotated[float, Meta(le=0, description="dc_dbfs reported for no offset.")] = -120.0


def frame_ms(params: AudioQualityParams) -> int:
    """As audio-level: frames as long as the window, 10 to 100 ms (each frame costs the supervisor)."""
    return params.frame_ms or max(10, min(100, params.window_ms // 10 * 10))


def dbfs(value: float, floor_db: float) -> float:
    """`value` (linear, int16 units) in dBFS, clamped to the floor, rounded to 0.01 dB."""
    return max(floor_db, round(20 * math.log10(value / FULL_SCALE), 2)) if value > 0 else floor_db


class AudioQuality(AudioProcessor[AudioQualityParams]):
    name = "audio-quality"

    def __init__(self, params: AudioQualityParams) -> None:
        super().__init__(params)
        rate = params.sample_rate
        self._window = max(1, rate * params.window_ms // 1000)
        self._context = rate * CONTEXT_MS // 1000
        self._position = 0  # index of the next sample
        self._anchor = (0, 0)  # (sample index, time_us) of the latest frame's first sample
        self._window_start = 0
        self._window_start_us = 0
        self._sum = 0
        self._clipped = 0
        self._gaps = 0
        self._tallies: list[tuple[int, str, int]] = []  # (sample index, window field, amount)
        self._clips = ClipEpisodes(self)
        self._dropouts = Dropouts(self)
        self._reset_detectors()

    @classmethod
    def input_format(cls, params: AudioQualityParams) -> AudioFormat:
        return AudioFormat(sample_rate=params.sample_rate, channels=1, frame_ms=frame_ms(params))

    def _reset_detectors(self) -> None:
        rate = self.params.sample_rate
        floor = FULL_SCALE * 10 ** (self.params.click_floor_dbfs / 20)
        block, merge = rate * CLICK_BLOCK_MS // 1000, rate * CLICK_MERGE_MS // 1000
        self._clicks = ClickDetector(block, self.params.click_factor, floor, merge)
        self._clips.reset()
        self._dropouts.reset()

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        samples = frame.samples[:, 0]
        first = self._position
        if self._window_start == first:  # a window starts with this frame: its time is the frame's
            self._window_start_us = frame.time_us
        self._anchor = (first, frame.time_us)
        if frame.gap:  # lost frames: no run or click continues across the hole
            self._gaps += 1
            ctx.emit(TOPIC, {"event": "gap", "time_us": frame.time_us})
            self._clips.finish(ctx)
            self._reset_detectors()
        self._clips.feed(samples, first, ctx)
        self._dropouts.feed(samples, first, ctx)
        for index, magnitude in self._clicks.feed(samples, first):
            self.tally(index, "clicks", 1)
            level = dbfs(magnitude, self.params.floor_db)
            ctx.emit(TOPIC, {"event": "click", "time_us": self.time_us(index), "level_dbfs": level})
        self._position += samples.size
        self._accumulate(samples, first, frame.time_us, ctx)

    def close(self, ctx: ProcessContext) -> None:
        self._clips.finish(ctx)
        if self._position > self._window_start:
            self._emit_window(self._position, ctx, partial=True)

    def time_us(self, index: int) -> int:
        anchor_index, anchor_us = self._anchor
        return anchor_us + (index - anchor_index) * 1_000_000 // self.params.sample_rate

    def tally(self, index: int, field: str, amount: int) -> None:
        self._tallies.append((index, field, amount))

    def _accumulate(self, samples: Samples, first: int, time_us: int, ctx: ProcessContext) -> None:
        """Window sums over the frame, split where windows end (a window may span frames of any size)."""
        offset = 0
        level = self.params.clip_level
        while offset < samples.size:
            take = min(self._window_start + self._window - (first + offset), samples.size - offset)
            segment = samples[offset : offset + take]
            self._sum += int(segment.sum(dtype=np.int64))
            self._clipped += int(np.count_nonzero((segment >= level) | (segment <= -level - 1)))
            offset += take
            if first + offset == self._window_start + self._window:
                self._emit_window(first + offset, ctx, partial=False)
                self._window_start_us = time_us + offset * 1_000_000 // self.params.sample_rate

    def _emit_window(self, end: int, ctx: ProcessContext, *, partial: bool) -> None:
        count = end - self._window_start
        fields = {"clip_runs": 0, "longest_clip_run": 0, "dropouts": 0, "dropout_samples": 0, "clicks": 0}
        kept = []
        for index, field, amount in self._tallies:
            if index >= end and not partial:
                kept.append((index, field, amount))
            elif field == "longest_clip_run":
                fields[field] = max(fields[field], amount)
            else:
                fields[field] += amount
        mean = self._sum / count / FULL_SCALE
        payload: dict[str, Any] = {
            "start_us": self._window_start_us,
            "duration_ms": round(count * 1000 / self.params.sample_rate, 3),
            "clipped_samples": self._clipped,
            **fields,
            "dc_offset": round(mean, 6),
            "dc_dbfs": dbfs(abs(mean) * FULL_SCALE, self.params.floor_db),
            "gaps": self._gaps,
        }
        if partial:
            payload["partial"] = True
        ctx.emit(TOPIC, payload)
        self._tallies = kept
        self._window_start, self._sum, self._clipped, self._gaps = end, 0, 0, 0


class ClipEpisodes:
    """Clip runs, counted, and grouped into clip_start / clip_end episodes."""

    def __init__(self, owner: AudioQuality) -> None:
        self.owner = owner
        params = owner.params
        self.hold = params.sample_rate * params.hold_ms // 1000
        self.runs = RunFinder()
        self.episode: dict[str, int] | None = None  # start, last_end, runs, samples

    def reset(self) -> None:
        self.runs = RunFinder()

    def feed(self, samples: Samples, first: int, ctx: ProcessContext) -> None:
        level = self.owner.params.clip_level
        minimum = self.owner.params.min_clip_run
        for run in self.runs.feed((samples >= level) | (samples <= -level - 1), first):
            if run.length >= minimum:
                self._add(run, ctx)
        end = first + samples.size
        open_length = self.runs.open_length(end)
        if open_length >= minimum and self.episode is None:
            self._start(end - open_length, ctx)
        if open_length == 0 and self.episode is not None and end - self.episode["last_end"] > self.hold:
            self.finish(ctx)

    def _start(self, start: int, ctx: ProcessContext) -> None:
        self.episode = {"start": start, "last_end": start, "runs": 0, "samples": 0}
        ctx.emit(TOPIC, {"event": "clip_start", "time_us": self.owner.time_us(start)})

    def _add(self, run: Run, ctx: ProcessContext) -> None:
        if self.episode is not None and run.start - self.episode["last_end"] > self.hold:
            self.finish(ctx)
        if self.episode is None:
            self._start(run.start, ctx)
        assert self.episode is not None
        self.episode["last_end"] = run.end
        self.episode["runs"] += 1
        self.episode["samples"] += run.length
        self.owner.tally(run.start, "clip_runs", 1)
        self.owner.tally(run.start, "longest_clip_run", run.length)

    def finish(self, ctx: ProcessContext) -> None:
        episode, self.episode = self.episode, None
        if episode is None or episode["runs"] == 0:
            return
        owner = self.owner
        payload = {
            "event": "clip_end",
            "start_us": owner.time_us(episode["start"]),
            "end_us": owner.time_us(episode["last_end"]),
            "runs": episode["runs"],
            "clipped_samples": episode["samples"],
        }
        ctx.emit(TOPIC, payload)


class Dropouts:
    """Zero runs between non-silent audio."""

    def __init__(self, owner: AudioQuality) -> None:
        self.owner = owner
        params = owner.params
        rate = params.sample_rate
        self.context = rate * CONTEXT_MS // 1000
        self.shortest = max(1, math.ceil(params.min_dropout_ms * rate / 1000))
        self.longest = int(params.max_dropout_ms * rate / 1000)
        self.threshold = (FULL_SCALE * 10 ** (params.silence_dbfs / 20)) ** 2
        self.reset()

    def reset(self) -> None:
        self.runs = RunFinder()
        self.history = np.empty(0, np.int16)  # the last `context` samples before the current frame
        self.open_loud_before = False  # whether audio before the open zero run was loud
        self.pending: list[tuple[Run, bool]] = []  # runs awaiting the audio after them

    def feed(self, samples: Samples, first: int, ctx: ProcessContext) -> None:
        buffer = np.concatenate((self.history, samples))
        base = first - self.history.size
        waiting = self.pending + [
            (run, self._loud_before(run, buffer, base)) for run in self.runs.feed(samples == 0, first)
        ]
        self.pending = []
        for run, loud_before in waiting:
            after = buffer[run.end - base : run.end - base + self.context]
            if after.size < self.context:
                self.pending.append((run, loud_before))
            elif loud_before and self._loud(after) and self.shortest <= run.length <= self.longest:
                self.owner.tally(run.start, "dropouts", 1)
                self.owner.tally(run.start, "dropout_samples", run.length)
                event = {"event": "dropout", "time_us": self.owner.time_us(run.start), "samples": run.length}
                event["duration_ms"] = round(run.length * 1000 / self.owner.params.sample_rate, 3)
                ctx.emit(TOPIC, event)
        open_length = self.runs.open_length(first + samples.size)
        if 0 < open_length <= samples.size:  # a zero run opened in this frame: judge what came before
            self.open_loud_before = self._loud_before(
                Run(first + samples.size - open_length, 0), buffer, base
            )
        self.history = buffer[-self.context :] if self.context else buffer[:0]

    def _loud_before(self, run: Run, buffer: Samples, base: int) -> bool:
        if run.start - base < self.context:  # it opened in an earlier frame
            return self.open_loud_before
        return self._loud(buffer[run.start - base - self.context : run.start - base])

    def _loud(self, samples: Samples) -> bool:
        wide = samples.astype(np.float64)
        return bool(wide.size) and float(np.dot(wide, wide)) / wide.size >= self.threshold
