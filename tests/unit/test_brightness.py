"""brightness against FFmpeg's signalstats filter, run here through PyAV's filter graph on the very same
I420 frames: YMIN, YLOW, YAVG, YHIGH, YMAX and YDIF as the filter writes them, including its percentile
rounding; too_dark / too_bright events on frames whose YAVG sits right at the thresholds."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from skimage import data as samples

from framepool.processors import VideoFormat, VideoFrame, frame_bytes, instantiate, parse_spec, resolve
from framepool.processors.brightness import luma_figures
from tests.support.context import RecordingContext, run

FIGURES = ("YMIN", "YLOW", "YAVG", "YHIGH", "YMAX", "YDIF")
FPS = 10


def i420(luma: np.ndarray, seq: int = 0, chroma: int = 128) -> VideoFrame:
    height, width = luma.shape
    buffer = np.full(frame_bytes(width, height, "I420"), chroma, np.uint8)
    buffer[: width * height] = luma.reshape(-1)
    return VideoFrame(buffer, width, height, "I420", seq * 1_000_000 // FPS, seq, False)


def signalstats(frames: list[VideoFrame]) -> list[dict[str, str]]:
    """FFmpeg's signalstats metadata (the Y figures, as strings) for each I420 frame."""
    first = frames[0]
    graph = av.filter.Graph()
    source = graph.add_buffer(
        width=first.width, height=first.height, format="yuv420p", time_base=Fraction(1, FPS)
    )
    stats, sink = graph.add("signalstats"), graph.add("buffersink")
    source.link_to(stats)
    stats.link_to(sink)
    graph.configure()
    results = []
    for frame in frames:
        picture = av.VideoFrame(frame.width, frame.height, "yuv420p")
        planes = (frame.y, *frame.chroma())
        for plane, values in zip(picture.planes, planes, strict=True):
            padded = np.zeros((plane.height, plane.line_size), np.uint8)
            padded[:, : values.shape[1]] = values
            plane.update(padded.tobytes())
        picture.pts = frame.seq
        graph.push(picture)
        metadata = graph.pull().metadata
        results.append({key: metadata[f"lavfi.signalstats.{key}"] for key in FIGURES})
    return results


def as_signalstats_writes(figures: dict[str, float]) -> dict[str, str]:
    """Our figures printed as the filter prints them (integers as %d, averages as %g)."""
    return {
        key: f"{value:g}" if key in ("YAVG", "YDIF") else str(int(value)) for key, value in figures.items()
    }


def figure_lines(ctx: RecordingContext) -> list[dict[str, float]]:
    return [
        {key: payload[key] for key in FIGURES if key in payload}
        for _topic, payload in ctx.results
        if "YMIN" in payload
    ]


def camera_clip() -> list[VideoFrame]:
    """Natural luma, darkened, brightened, shifted: varied histograms and differences."""
    photo = np.asarray(samples.camera(), np.int16)[::2, ::2]
    variants = [photo, photo // 3, photo // 2 + 128, np.roll(photo, 5, axis=1), 255 - photo, photo * 0 + 16]
    return [i420(np.clip(v, 0, 255).astype(np.uint8), seq) for seq, v in enumerate(variants)]


def noise_clip(height: int, width: int) -> list[VideoFrame]:
    rng = np.random.default_rng(height * 1000 + width)
    return [i420(rng.integers(0, 256, (height, width), dtype=np.uint8), seq) for seq in range(4)]


CLIPS = {
    "camera 256x256": camera_clip,
    "noise 64x48": lambda: noise_clip(48, 64),
    "noise odd 33x17": lambda: noise_clip(17, 33),
    # 25 pixels: the percentiles' lrint(2.5) and lrint(22.5) round half to even (2 and 22).
    "ramp 5x5": lambda: [i420(np.arange(25, dtype=np.uint8).reshape(5, 5) * 10)],
}


@pytest.mark.parametrize("name", list(CLIPS))
def test_figures_equal_signalstats(name: str) -> None:
    frames = CLIPS[name]()
    expected = signalstats(frames)
    ctx = run(instantiate(parse_spec("brightness(ydif=true)")), frames)
    got = figure_lines(ctx)
    assert [as_signalstats_writes(line) for line in got] == expected
    for line, reference in zip(got, expected, strict=True):
        for key in ("YAVG", "YDIF"):  # the filter prints 6 significant digits
            assert line[key] == pytest.approx(float(reference[key]), rel=5e-6, abs=1e-9)
    print(f"{name}: {expected[0]}")


def test_luma_figures_function_matches_the_processor() -> None:
    frames = camera_clip()
    ctx = run(instantiate(parse_spec("brightness")), frames)
    assert figure_lines(ctx) == [luma_figures(frame.y) for frame in frames]


def level_frame(average: float, seq: int, shape: tuple[int, int] = (16, 32)) -> VideoFrame:
    """A frame whose YAVG is `average` as closely as whole pixels allow: every pixel at floor(average),
    enough of them one level higher."""
    pixels = shape[0] * shape[1]
    base = int(np.floor(average))
    luma = np.full(pixels, base, np.uint8)
    luma[: round((average - base) * pixels)] += 1
    return i420(luma.reshape(shape), seq)


def test_dark_and_bright_events_at_the_thresholds() -> None:
    """Dark: YAVG < 40, until YAVG >= 42 (hysteresis 2); bright: YAVG > 220, until YAVG <= 218. Each must
    hold 1 s (10 frames). Frames sit one pixel away from each threshold (512 pixels: 1/512 level, which
    signalstats's 6 significant digits still show: 39.998, 220.002)."""
    step = 1 / 512
    plan = [
        (40.0, 10),  # exactly the threshold: not dark
        (40.0 - step, 20),  # dark from frame 10, confirmed at frame 20
        (42.0 - step, 10),  # not yet back past the hysteresis
        (42.0, 12),  # back from frame 40, confirmed at 50
        (220.0, 10),  # exactly the threshold: not bright (frames 52-61)
        (220.0 + step, 12),  # bright from frame 62, confirmed at 72
        (218.0 + step, 5),  # not back yet
        (218.0, 3),  # back from frame 79, but the stream ends (frame 81) first
    ]
    averages = [average for average, count in plan for _ in range(count)]
    frames = [level_frame(average, seq) for seq, average in enumerate(averages)]
    reference = [float(stats["YAVG"]) for stats in signalstats(frames)]
    assert reference == pytest.approx(averages, abs=1e-3)
    assert reference[10] < 40.0 <= reference[9] and reference[62] > 220.0 >= reference[61]
    spec = "brightness(dark_below=40, bright_above=220, hysteresis=2, min_duration_ms=1000)"
    ctx = run(instantiate(parse_spec(spec)), frames)
    assert [line["YAVG"] for line in figure_lines(ctx)] == pytest.approx(reference, rel=5e-6)
    events = [
        (e["event"], e["start_us"], e.get("end_us"), e["frame_time_us"])
        for e in ctx.events()
        if e["event"] != "summary"
    ]
    ms = 1000
    assert events == [
        ("too_dark_start", 1000 * ms, None, 2000 * ms),
        ("too_dark_end", 1000 * ms, 4000 * ms, 5000 * ms),
        ("too_bright_start", 6200 * ms, None, 7200 * ms),
        ("too_bright_end", 6200 * ms, 8100 * ms, 8100 * ms),  # closed by the end of the stream
    ]
    assert ctx.events("too_bright_end")[0]["reason"] == "stream ended"
    summary = ctx.events("summary")[0]
    assert summary["frames"] == len(frames)
    assert summary["mean_yavg"] == pytest.approx(np.mean(reference), rel=1e-5)


def test_emit_every_and_format() -> None:
    frames = [level_frame(100.0, seq) for seq in range(7)]
    ctx = run(instantiate(parse_spec("brightness(emit_every=3)")), frames)
    assert [line["frame_time_us"] for _t, line in ctx.results if "YMIN" in line] == [0, 300_000, 600_000]
    assert figure_lines(run(instantiate(parse_spec("brightness(emit_every=0)")), frames)) == []
    assert resolve(parse_spec("brightness(max_width=320)")).fmt == VideoFormat(max_width=320)
