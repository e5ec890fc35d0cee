"""Speech segments from per-chunk speech probabilities, as they become certain (worker process).

Reference: `get_speech_timestamps_from_probs` in silero-vad's `utils_vad.py` (what `get_speech_timestamps`
applies to the model's probabilities), with `max_speech_duration_s` infinite. A segment starts at the first
chunk whose probability is at least `threshold`; it ends at the first chunk of a run below `neg_threshold`
(default `threshold - 0.15`, at least 0.01) once that run has lasted `min_silence_ms`; a segment not longer
than `min_speech_ms` is dropped; each kept segment is padded by `speech_pad_ms` on both sides, except that
two segments closer than twice the padding share the gap between them half and half; a segment still open
when the stream ends ends with it.

The reference sees the whole recording; a stream must report edges while it runs, so each edge is reported
as soon as later audio can no longer change it: a start once the segment is certain to be longer than
`min_speech_ms` (with `min_speech_ms=0`, at the chunk that triggers it), an end once no kept segment can
start within twice the padding of it. The edges are then exactly the reference's segments. `VADIterator`,
the reference's streaming helper, gives the same edges when `min_speech_ms=0` and `min_silence_ms` is at
least twice the padding (it has no minimum speech, and does not share close gaps).

Positions are in samples at the model's rate; the decisions are per chunk (a Python step per 32 ms chunk,
not per sample).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

EdgeKind = Literal["speech_start", "speech_end"]


@dataclass(frozen=True, slots=True)
class SpeechEdge:
    kind: EdgeKind
    sample: int  # padded, as the reference's segment bounds


class SpeechSegmenter:
    """The reference's segmentation, reported edge by edge (see module)."""

    def __init__(
        self,
        *,
        window: int,
        sample_rate: int,
        threshold: float,
        neg_threshold: float | None,
        min_speech_ms: int,
        min_silence_ms: int,
        speech_pad_ms: int,
    ) -> None:
        self.window = window
        self.threshold = threshold
        # The reference's expressions, floats included, so comparisons fall the same way.
        self.neg_threshold = max(threshold - 0.15, 0.01) if neg_threshold is None else neg_threshold
        self.min_speech = sample_rate * min_speech_ms / 1000
        self.min_silence = sample_rate * min_silence_ms / 1000
        self.pad = sample_rate * speech_pad_ms / 1000
        self.chunks = 0
        self._triggered = False
        self._start = 0  # first chunk of the open segment
        self._temp_end = 0  # first chunk of the silence that may end it; 0: none
        self._kept = False  # the open segment is longer than min_speech: its start was reported
        self._pending_end: int | None = None  # unpadded end of the last kept segment, not reported yet

    @property
    def settled(self) -> int:
        """No speech_start reported later can lie before this sample."""
        earliest = self._start if self._triggered and not self._kept else self.chunks * self.window
        return max(0, int(earliest - self.pad))

    def push(self, probabilities: Iterable[float]) -> list[SpeechEdge]:
        """The edges that the probabilities of the next whole chunks make certain."""
        edges: list[SpeechEdge] = []
        for probability in probabilities:
            self._step(float(probability), edges)
            self._settle(edges)
        return edges

    def finish(self, tail: Iterable[float], length: int) -> list[SpeechEdge]:
        """The remaining edges when the stream ends after `length` samples; `tail` holds the probabilities
        of the chunks not pushed (the last one zero-padded, as the reference pads it)."""
        edges: list[SpeechEdge] = []
        for probability in tail:
            self._step(float(probability), edges)
        last_kept = self._triggered and (self._kept or length - self._start > self.min_speech)
        if last_kept and not self._kept:
            self._keep(edges)
        if self._pending_end is not None:
            edges.append(SpeechEdge("speech_end", int(min(length, self._pending_end + self.pad))))
            self._pending_end = None
        if last_kept:
            edges.append(SpeechEdge("speech_end", int(length)))
        self._triggered = self._kept = False
        return edges

    def _step(self, probability: float, edges: list[SpeechEdge]) -> None:
        """One iteration of the reference's loop over chunks."""
        sample = self.chunks * self.window
        self.chunks += 1
        if probability >= self.threshold and self._temp_end:
            self._temp_end = 0
        if probability >= self.threshold and not self._triggered:
            self._triggered, self._start, self._kept = True, sample, False
        elif probability < self.neg_threshold and self._triggered:
            if not self._temp_end:
                self._temp_end = sample
            if sample - self._temp_end >= self.min_silence:
                self._end_segment(self._temp_end, edges)

    def _end_segment(self, end: int, edges: list[SpeechEdge]) -> None:
        if end - self._start > self.min_speech:
            if not self._kept:
                self._keep(edges)
            self._pending_end = end
        self._triggered, self._kept, self._temp_end = False, False, 0

    def _settle(self, edges: list[SpeechEdge]) -> None:
        """Report what the chunks so far make certain (see module)."""
        position = self.chunks * self.window
        if self._triggered and not self._kept:
            # The open segment will end at its pending silence, or at a later chunk (or the stream's end).
            earliest_end = self._temp_end or position
            if earliest_end - self._start > self.min_speech:
                self._keep(edges)
        end = self._pending_end
        if end is None or position < end + 2 * self.pad:
            return
        if self._triggered and self._start < end + 2 * self.pad:
            return  # a segment starting this close may yet be kept, and would share the gap
        edges.append(SpeechEdge("speech_end", int(end + self.pad)))
        self._pending_end = None

    def _keep(self, edges: list[SpeechEdge]) -> None:
        """The open segment is long enough: report its start, and the previous end it shares a gap with."""
        start = self._start
        end = self._pending_end
        if end is not None and start - end < 2 * self.pad:
            half = (start - end) // 2
            edges.append(SpeechEdge("speech_end", end + half))
            padded_start = int(max(0, start - half))
        else:
            if end is not None:
                edges.append(SpeechEdge("speech_end", int(end + self.pad)))
            padded_start = int(max(0, start - self.pad))
        self._pending_end = None
        edges.append(SpeechEdge("speech_start", padded_start))
        self._kept = True
