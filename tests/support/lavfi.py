"""FFmpeg's video analysis filters as references (test process): I420 frames through PyAV's filter graph
(buffer → filter → buffersink), returning what the filter attached to each frame as metadata and what it
logged.

Both matter: `blackdetect` reports a run only in its log line (`black_start:… black_end:…`, written when the
run is long enough, and at end of stream from the filter's uninit, which runs when the graph is freed), while
its `lavfi.black_start` metadata marks every run, long or not; `freezedetect` reports through metadata (and
logs the same). Timestamps: frames go in with pts = `time_us` in a 1/1000000 time base, the filters print
times with µs precision, so a printed time maps back to `time_us` exactly.

A finding that shapes the tests: on CPUs with AVX-512, FFmpeg 8.1's SIMD sum of absolute differences (used by
freezedetect) reads past the row of a plane narrower than 64 samples and adds whatever memory follows, so
freezedetect's decisions on frames under 128 pixels wide are not repeatable. The frozen-frame tests use
frames at least 128 wide, where the filter is exact (its C and SIMD paths then agree).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.logging
import numpy as np

from framepool.processors import VideoFrame

TIME_BASE = Fraction(1, 1_000_000)


@dataclass
class FilterRun:
    """What one filter said about a sequence of frames."""

    metadata: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (pts µs, metadata) per frame
    log: list[str] = field(default_factory=list)  # the filter's own log lines, in order

    def lines(self, pattern: str) -> list[re.Match[str]]:
        """Log lines matching `pattern` (a regular expression), in order."""
        return [match for line in self.log if (match := re.search(pattern, line))]


def seconds_to_us(text: str) -> int:
    """A time the filter printed (seconds, µs precision) in µs."""
    return round(float(text) * 1_000_000)


def av_frame(frame: VideoFrame, full_range: bool = False) -> av.VideoFrame:
    """An I420 VideoFrame as a PyAV yuv420p frame (any width and height) with pts = time_us."""
    width, height = frame.width, frame.height
    chroma = ((height + 1) // 2, (width + 1) // 2)
    luma, (u, v) = frame.y, frame.chroma()
    picture = av.VideoFrame(width, height, "yuv420p")
    for plane, pixels in zip(picture.planes, (luma, u, v), strict=True):
        rows = pixels.shape[0] if pixels is luma else chroma[0]
        target = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        target[:rows, : pixels.shape[1]] = pixels
    picture.pts = frame.time_us
    picture.time_base = TIME_BASE
    if full_range:
        picture.color_range = 2  # AVCOL_RANGE_JPEG
    return picture


def run_filter(name: str, args: str, frames: Iterable[VideoFrame], full_range: bool = False) -> FilterRun:
    """Run `name=args` over `frames` to the end of the stream; metadata per frame and the filter's log
    (debug level included)."""
    result = FilterRun()
    previous_level = av.logging.get_level()
    av.logging.set_level(av.logging.DEBUG)
    av.logging.set_skip_repeated(False)
    try:
        with av.logging.Capture(local=False) as logs:
            _push_all(name, args, frames, full_range, result)
            gc.collect()  # the filter's uninit (blackdetect's end-of-stream report) runs on freeing
    finally:
        av.logging.set_level(previous_level)
        av.logging.set_skip_repeated(True)
    result.log = [str(message) for _level, source, message in logs if source == name]
    return result


def _push_all(
    name: str, args: str, frames: Iterable[VideoFrame], full_range: bool, result: FilterRun
) -> None:
    graph: av.filter.Graph | None = None
    for frame in frames:
        if graph is None:
            graph = _graph(name, args, frame.width, frame.height)
        graph.push(av_frame(frame, full_range))
        _pull(graph, result)
    if graph is not None:
        graph.push(None)
        _pull(graph, result)


def _graph(name: str, args: str, width: int, height: int) -> av.filter.Graph:
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="yuv420p", time_base=TIME_BASE)
    analysis = graph.add(name, args)
    sink = graph.add("buffersink")
    source.link_to(analysis)
    analysis.link_to(sink)
    graph.configure()
    return graph


def _pull(graph: av.filter.Graph, result: FilterRun) -> None:
    while True:
        try:
            out = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return
        assert isinstance(out, av.VideoFrame) and out.pts is not None
        result.metadata.append((int(out.pts), dict(out.metadata)))
