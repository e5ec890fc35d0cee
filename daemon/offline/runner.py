"""The offline runner, `framepool process` (supervisor process): a media file through the real worker pool.

The file takes the same path as a live track: the supervisor converts frames to the processors' declared
format, pushes them into shared-memory rings, pinned workers run the processors, and results and output
frames come back through the pool's sinks. Each stream of the file is decoded once and converted once per
distinct format its processors declare, into one ring per format, as a live track gets one SDK stream per
format. The only difference is the stream policy: `realtime=False`
makes the ring apply back-pressure (`push_wait`), so nothing is dropped, and the run checks it: every
converted frame must be counted as processed by its worker, else the exit status is non-zero.

Decoding runs on the supervisor's loop between pushes. That is acceptable here and only here: this
process serves no room, and back-pressure already paces decoding to the workers' speed.

A stop signal (SIGTERM, SIGINT) stops the run in order, as it stops the daemon: decoding ends, the pool
takes its streams and workers down its shutdown ladder, the command prints "interrupted after N frames"
and the summary so far, and exits 128 + the signal (130, 143). A second signal kills the workers at once
(the quick path); later ones are absorbed (`framepool.signals`).

`-o -` writes the results to stdout; the summary then goes to stderr, so stdout holds JSON lines only.
Output paths are checked before any worker starts: a missing directory is one line, exit 2.

Results are written as JSON lines in the schema of live data messages
(`framepool.pool.results.ResultMessage`): `participant` is empty, `track` names the input stream ("audio0",
"video1"), and `frame_time_us` is media time, µs since the start of the input (live it is the
supervisor's wall clock; see `framepool.ipc.slots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import av

from framepool.errors import ExitStatus, ProcessorError
from framepool.ipc.slots import OutputFrame
from framepool.logs import log_context
from framepool.offline.media import AudioConverter, MediaOutput, VideoConverter, decoded_frames, open_input
from framepool.offline.outputs import STDOUT, ResultLines, check_outputs
from framepool.pool import (
    Blob,
    FormatGroup,
    Result,
    StreamAttachment,
    StreamSpec,
    StreamStats,
    WorkerPool,
    format_groups,
)
from framepool.processors.api import Kind, VideoFormat
from framepool.processors.kinds import KINDS
from framepool.processors.registry import ProcessorSpec, parse_specs
from framepool.settings import Settings
from framepool.signals import StopSignals
from framepool.tasks import first_of

log = logging.getLogger(__name__)
PROGRESS_INTERVAL = 3.0


@dataclass(frozen=True, slots=True)
class OfflineJob:
    input: Path
    processors: str  # comma-separated specs, e.g. "audio-level(window_ms=100),video-motion"
    output: Path | None = None  # results as JSON lines
    output_media: Path | None = None  # processed tracks
    summary: bool = True


@dataclass(slots=True)
class StreamRun:
    """One input stream: its converter, its attachment and what happened to its frames."""

    stream_id: str
    kind: Kind
    index: int
    specs: list[ProcessorSpec]
    converter: AudioConverter | VideoConverter
    attachment: StreamAttachment | None = None
    decoded: int = 0
    final: StreamStats | None = None  # returned by detach
    events: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.final.processed if self.final is not None else 0


class OfflineSink:
    """The pool's callbacks for one stream: results to JSON lines, output frames to the media file."""

    def __init__(
        self, run: StreamRun, results: ResultLines | None, media: MediaOutput | None, counters: dict[str, int]
    ) -> None:
        self._run, self._results, self._media, self._counters = run, results, media, counters

    def on_result(self, result: Result) -> None:
        self._counters["results"] += 1
        if self._results is not None:
            self._results.write(result)

    def on_blob(self, blob: Blob) -> None:
        self._counters["blobs"] += 1
        if self._results is not None:
            self._results.write_blob(blob)

    def on_output_frame(self, stream_id: str, frame: OutputFrame) -> None:
        self._counters["output_frames"] += 1
        if self._media is not None:
            self._media.write(stream_id, frame)

    def on_stream_event(self, stream_id: str, event: str, detail: str) -> None:
        if event == "detached":  # the normal end of the stream
            return
        self._run.events.append(f"{event}: {detail}" if detail else event)
        log.warning("stream %s: %s %s", stream_id, event, detail)


@dataclass(frozen=True, slots=True)
class _OfflineKind:
    """What the offline runner does for one kind: which streams of the file feed its processors, the
    converter to their format, and the slot size of the stream's output ring."""

    streams: Callable[[av.container.InputContainer], Sequence[Any]]
    converter: Callable[[Any, Any], AudioConverter | VideoConverter]
    output_bytes: Callable[[Any], int]


def _video_converter(fmt: VideoFormat, stream: Any) -> VideoConverter:
    rate = stream.average_rate or stream.guessed_rate
    return VideoConverter(
        fmt,
        stream.codec_context.width,
        stream.codec_context.height,
        fractions.Fraction(rate) if rate else None,
    )


# Every stream gets an output ring, written to the media file or discarded, because a processor that
# publishes (video-motion with visualize) must work without --output-media too. It may publish the input
# geometry in any pixel format (RGBA is the largest), or up to a second of stereo audio.
_OFFLINE: dict[str, _OfflineKind] = {
    "audio": _OfflineKind(
        streams=lambda container: container.streams.audio,
        converter=lambda fmt, stream: AudioConverter(fmt, stream.codec_context.channels),
        output_bytes=lambda converter: max(4 * converter.max_frame_bytes, 192_000),
    ),
    "video": _OfflineKind(
        streams=lambda container: container.streams.video,
        converter=_video_converter,
        output_bytes=lambda converter: converter.width * converter.height * 4,
    ),
}


def plan_streams(
    container: av.container.InputContainer, specs: list[ProcessorSpec], path: Path
) -> list[StreamRun]:
    """Audio processors on every audio stream, video processors on every video stream: one run (converter,
    ring) per stream of the file and distinct input format, the first format's run named after the stream
    (`audio1`), the others with a suffix (`audio1.1`)."""
    groups = format_groups(specs)
    runs: list[StreamRun] = []
    for kind in KINDS:
        kind_groups = [group for group in groups if group.kind.name == kind]
        if kind_groups:
            runs += _kind_runs(container, kind, kind_groups, path)
    return runs


def _kind_runs(
    container: av.container.InputContainer, kind: str, groups: list[FormatGroup], path: Path
) -> list[StreamRun]:
    offline = _OFFLINE.get(kind)
    if offline is None:
        raise ProcessorError(f"{kind} processors cannot run offline")
    streams = offline.streams(container)
    if not streams:
        names = ", ".join(spec.name for group in groups for spec in group.specs)
        raise ProcessorError(f"{names} needs {kind}, but {path} has no {kind} stream")
    return [
        StreamRun(
            f"{kind}{stream.index}" + (f".{number}" if number else ""),
            group.kind.name,
            stream.index,
            group.specs,
            offline.converter(group.fmt, stream),
        )
        for stream in streams
        for number, group in enumerate(groups)
    ]


def stream_spec(run: StreamRun, labels: dict[str, str]) -> StreamSpec:
    return StreamSpec(
        stream_id=run.stream_id,
        kind=run.kind,
        processors=run.specs,
        realtime=False,
        max_frame_bytes=run.converter.max_frame_bytes,
        output_max_frame_bytes=_OFFLINE[run.kind].output_bytes(run.converter),
        labels={**labels, "track": run.stream_id},
    )


class Progress:
    """One line every few seconds on a terminal; nothing when stderr is a pipe or a file."""

    def __init__(
        self,
        duration_s: float | None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._enabled = self._stream.isatty()
        self._duration = duration_s
        self._clock = clock
        self._next = clock() + PROGRESS_INTERVAL

    def update(self, media_s: float) -> None:
        if not self._enabled or self._clock() < self._next:
            return
        self._next = self._clock() + PROGRESS_INTERVAL
        total = (
            f" of {self._duration:.1f} s ({100 * media_s / self._duration:.0f} %)" if self._duration else ""
        )
        print(f"framepool: {media_s:.1f} s{total} processed", file=self._stream, flush=True)


@dataclass(slots=True)
class OfflineReport:
    runs: list[StreamRun]
    results: int
    output_frames: int
    media_frames: dict[str, int]
    wall_s: float
    interrupted_by: int | None = None  # the stop signal that cut the run short
    media_failure: str = ""  # why --output-media stopped being written, if it did

    def decoded(self) -> int:
        return sum(run.decoded for run in self.runs)

    def lost(self) -> dict[str, int]:
        """Frames decoded but not processed, per stream (empty when nothing was lost)."""
        return {
            run.stream_id: run.decoded - run.processed for run in self.runs if run.decoded != run.processed
        }

    def failed(self) -> bool:
        return bool(self.media_failure) or any(run.events for run in self.runs)


async def run_offline(settings: Settings, job: OfflineJob) -> int:
    """`framepool process`: returns the exit status (non-zero when frames were lost or processors failed,
    128 + the signal when a stop signal cut the run short)."""
    check_outputs(job.output, job.output_media)
    signals = StopSignals()
    signals.install()  # the command's own process: never restored, late signals stay absorbed
    report = await process_file(settings, job, signals)
    if report.interrupted_by is not None:
        print(f"framepool: interrupted after {report.decoded()} frames", file=sys.stderr, flush=True)
    if job.summary:
        print(summary(job, report), file=sys.stderr if job.output == STDOUT else sys.stdout, flush=True)
    if report.interrupted_by is not None:
        return ExitStatus.of_signal(report.interrupted_by)
    lost = report.lost()
    if lost:
        detail = ", ".join(f"{stream_id}: {count} frames" for stream_id, count in lost.items())
        print(f"framepool: frames lost between decoding and processing ({detail})", file=sys.stderr)
        return ExitStatus.FAILURE
    return ExitStatus.FAILURE if report.failed() else ExitStatus.OK


async def process_file(
    settings: Settings, job: OfflineJob, signals: StopSignals | None = None
) -> OfflineReport:
    """Decode `job.input`, run it through a worker pool, write the outputs; FramepoolError for bad input.

    With `signals`, the first stop signal ends the run in order (the report says which signal)."""
    started = time.monotonic()
    specs = parse_specs(job.processors)
    if not specs:
        raise ProcessorError("no processor given: --processor NAME[,NAME...]")
    container = open_input(job.input)
    counters = {"results": 0, "output_frames": 0, "blobs": 0}
    media = None
    interrupted_by: int | None = None
    try:
        runs = plan_streams(container, specs, job.input)
        media = MediaOutput(job.output_media, _candidates(runs)) if job.output_media else None
        results = ResultLines(job.output) if job.output else None
        try:
            with log_context(input=str(job.input)):
                pool = WorkerPool(settings)
                work = _run_streams(pool, job, container, runs, media, results, counters)
                interrupted_by = await _interruptible(pool, work, signals)
        finally:
            if results is not None:
                results.close()
            if media is not None:
                media.close()
    finally:
        container.close()
    media_frames = media.frames_written() if media is not None else {}
    for run in runs:  # streams a stop signal cut short were never detached: their counts so far
        if run.final is None and run.attachment is not None:
            run.final = run.attachment.stats()
    return OfflineReport(
        runs,
        counters["results"],
        counters["output_frames"],
        media_frames,
        time.monotonic() - started,
        interrupted_by,
        media.failure if media is not None else "",
    )


async def _interruptible(
    pool: WorkerPool, work: Coroutine[Any, Any, None], signals: StopSignals | None
) -> int | None:
    """Run `work`, then close the pool; a stop signal cuts `work` short (returns the signal's number), a
    second one kills the workers instead of waiting for their shutdown ladder."""
    running = asyncio.ensure_future(work)
    interrupted_by = None
    try:
        if signals is None:
            await running
        elif await first_of({True: running, False: signals.first.wait()}):
            running.result()
        else:
            interrupted_by = signals.first_signal or signal.SIGTERM
            log.warning("stop requested: stopping the run (a second signal kills the workers)")
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    finally:
        running.cancel()
        closing = asyncio.ensure_future(pool.aclose())
        if signals is not None and await first_of({True: closing, False: signals.second.wait()}) is False:
            log.warning("second signal: killing the workers")
            for pid in pool.worker_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        await closing
    return interrupted_by


def _candidates(runs: list[StreamRun]) -> dict[str, fractions.Fraction | None]:
    return {
        run.stream_id: run.converter.rate if isinstance(run.converter, VideoConverter) else None
        for run in runs
    }


async def _run_streams(
    pool: WorkerPool,
    job: OfflineJob,
    container: av.container.InputContainer,
    runs: list[StreamRun],
    media: MediaOutput | None,
    results: ResultLines | None,
    counters: dict[str, int],
) -> None:
    await pool.start()
    labels = {"source": job.input.name}
    for run in runs:
        sink = OfflineSink(run, results, media, counters)
        try:
            run.attachment = await pool.attach(stream_spec(run, labels), sink)
        except ProcessorError as exc:  # one line naming the processor(s) and the error; exit 2
            names = ", ".join(spec.name for spec in run.specs)
            reason = str(exc).rpartition("failed to start: ")[2]
            raise ProcessorError(f"processor {names} ({run.stream_id}) failed to start: {reason}") from None
    await _feed(container, runs)
    for run in runs:
        assert run.attachment is not None
        await run.attachment.drain()
        run.final = await run.attachment.detach()


async def _feed(container: av.container.InputContainer, runs: list[StreamRun]) -> None:
    """Decode, convert and push every frame with back-pressure; then flush the converters."""
    by_index: dict[int, list[StreamRun]] = {}
    for run in runs:
        by_index.setdefault(run.index, []).append(run)
    duration = container.duration / 1_000_000 if container.duration else None
    progress = Progress(duration)
    for index, frame in decoded_frames(container):
        assert isinstance(frame, av.AudioFrame | av.VideoFrame)
        for run in by_index.get(index, ()):  # decoded once, converted once per distinct format
            await _push(run, run.converter.convert(frame))  # type: ignore[arg-type]
        if frame.time is not None:
            progress.update(frame.time)
    for run in runs:
        await _push(run, run.converter.convert(None))


async def _push(run: StreamRun, frames: list[Any]) -> None:
    assert run.attachment is not None
    for converted in frames:
        await run.attachment.push_wait(converted.data, converted.frame_time_us, converted.shape)
        run.decoded += 1


def summary(job: OfflineJob, report: OfflineReport) -> str:
    lines = [f"{job.input}: {len(report.runs)} streams, wall time {report.wall_s:.2f} s"]
    for run in report.runs:
        stats = run.final
        if stats is None:  # a stop signal came before the stream was attached
            lines.append(f"  {run.stream_id} ({', '.join(str(spec) for spec in run.specs)}): not started")
            continue
        lines.append(
            f"  {run.stream_id} ({', '.join(str(spec) for spec in run.specs)}): decoded {run.decoded}, "
            f"processed {stats.processed}, dropped {stats.dropped}, lost {stats.lost}, errors {stats.errors}"
        )
        lines.extend(_processor_line(name, seconds, stats) for name, seconds in stats.busy.items())
        lines.extend(f"    event {event}" for event in run.events)
    shown = "stdout" if job.output == STDOUT else job.output
    written = f" written to {shown}" if job.output else " (not written: no --output)"
    lines.append(f"  results: {report.results}{written}")
    if job.output_media is not None:
        frames = ", ".join(f"{key}: {count} frames" for key, count in report.media_frames.items())
        lines.append(f"  processed media: {job.output_media} ({frames or 'nothing published'})")
        if report.media_failure:
            lines.append(f"    FAILED, no further frames written: {report.media_failure}")
    return "\n".join(lines)


def _processor_line(name: str, seconds: float, stats: StreamStats) -> str:
    line = f"    {name}: {seconds * 1000:.1f} ms processing"
    if name in stats.quarantined:
        line += f"; QUARANTINED, not run on the rest of the stream ({stats.quarantined[name]})"
    return line
