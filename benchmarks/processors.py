"""Processor cost: CPU µs per frame of every built-in processor at its native input format, and streams
per core (benchmark process; the processors run in it as they run in a worker: `process` per frame, then
`end_of_drain` as after a pass over the rings).

Inputs come from `benchmarks/_inputs_*.py`: each module's `inputs()` maps a processor name to a spec and
about 2 s of representative frames at the processor's native format. The frames are fed in a loop (media
time keeps advancing) for at least `--seconds` of CPU per processor, after a warm-up; three repeats, the
median is reported.

Baselines measured in the same run, on the same frames, so the figures are ratios:
- `copy_us`: one copy of the frame's samples or pixels into a reused buffer (the least any processor that
  looks at every sample pays);
- `audio-level` / `video-motion`: the two demonstration processors, for the order of magnitude of a
  processor that does one pass of arithmetic over the frame.

A stream's share of a core is CPU per frame over the frame's duration (audio: its samples at its rate;
video: the interval between its frames' times); streams per core is its inverse. Targets from the issue:
every audio analyser <= 2 % of a core per stream at 48 kHz, privacy-blur <= 10 % at 640x360 30 fps; the
VAD batching and memory comparisons come from `benchmarks/_vad_cost.py` when present.

    .venv/bin/python benchmarks/processors.py            # table
    .venv/bin/python benchmarks/processors.py --json     # one JSON object
    .venv/bin/python benchmarks/processors.py --quick    # shorter runs, noisier
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from framepool.processors import AudioFrame, VideoFrame, instantiate, parse_spec, resolve
from framepool.processors.resource import resources_of
from tests.support.context import RecordingContext

AUDIO_TARGET = 0.02  # share of a core per stream, every audio analyser at 48 kHz
TARGETS = {"privacy-blur": 0.10}  # at 640x360, 30 fps
BASELINES = ("audio-level", "video-motion")
Frame = AudioFrame | VideoFrame


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    return models[0] if models else platform.processor()


def collect_inputs() -> dict[str, tuple[str, list[Frame]]]:
    """Every `benchmarks/_inputs_*.py` module's inputs, and the baselines' own."""
    found: dict[str, tuple[str, list[Frame]]] = {}
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(here, "_inputs_*.py"))):
        module = importlib.import_module(f"benchmarks.{os.path.basename(path)[:-3]}")
        found.update(module.inputs())
    audio = next((frames for _spec, frames in found.values() if isinstance(frames[0], AudioFrame)), None)
    video = next((frames for _spec, frames in found.values() if isinstance(frames[0], VideoFrame)), None)
    if audio is not None:
        found.setdefault("audio-level", ("audio-level(window_ms=100, frame_ms=10)", audio))
    if video is not None:
        found.setdefault("video-motion", ("video-motion", video))
    return found


def frame_seconds(frames: list[Frame]) -> float:
    """The media duration of one frame."""
    first = frames[0]
    if isinstance(first, AudioFrame):
        return first.samples.shape[0] / first.sample_rate
    return (frames[-1].time_us - first.time_us) / 1e6 / max(1, len(frames) - 1)


def shifted(frames: list[Frame], loop: int) -> list[Frame]:
    """The frames again, later in media time, so a processor sees time advance as it would live."""
    span = frames[-1].time_us - frames[0].time_us + round(frame_seconds(frames) * 1e6)
    offset = loop * span
    return [
        dataclasses.replace(frame, time_us=frame.time_us + offset, seq=frame.seq + loop * len(frames))
        for frame in frames
    ]


def time_processor(spec: str, frames: list[Frame], min_cpu_s: float) -> float:
    """CPU µs per frame of `process` + `end_of_drain`, after a warm-up pass over the frames."""
    resolved = resolve(parse_spec(spec))
    for resource in resources_of(resolved.cls):
        resource.get()
    processor = instantiate(resolved)
    ctx = RecordingContext()
    flush: Callable[[], None] = type(processor).end_of_drain
    for frame in frames:  # warm-up (first-call allocations, caches)
        processor.process(frame, ctx)
        flush()
    count, spent, loop = 0, 0.0, 1
    while spent < min_cpu_s:
        batch = shifted(frames, loop)
        ctx.results.clear()
        ctx.blobs.clear()
        ctx.video.clear()
        ctx.audio.clear()
        start = time.thread_time()
        for frame in batch:
            processor.process(frame, ctx)
            flush()
        spent += time.thread_time() - start
        count += len(batch)
        loop += 1
    processor.close(ctx)
    return spent / count * 1e6


def copy_us(frames: list[Frame], min_cpu_s: float) -> float:
    """CPU µs of copying one frame's data into a reused buffer."""
    sources = [f.samples if isinstance(f, AudioFrame) else f.data for f in frames]
    buffer = np.empty_like(sources[0])
    count, start = 0, time.thread_time()
    while time.thread_time() - start < min_cpu_s:
        for source in sources:
            if source.shape == buffer.shape:
                np.copyto(buffer, source)
            count += 1
    return (time.thread_time() - start) / count * 1e6


def measure(name: str, spec: str, frames: list[Frame], repeats: int, min_cpu_s: float) -> dict[str, Any]:
    us = statistics.median(time_processor(spec, frames, min_cpu_s) for _ in range(repeats))
    base = statistics.median(copy_us(frames, min_cpu_s / 4) for _ in range(repeats))
    share = us / 1e6 / frame_seconds(frames)
    first = frames[0]
    native = (
        f"{first.sample_rate} Hz x{first.channels}, {first.samples.shape[0]} samples"
        if isinstance(first, AudioFrame)
        else f"{first.width}x{first.height} {first.pixel_format}, {1 / frame_seconds(frames):.0f} fps"
    )
    return {
        "name": name,
        "spec": spec,
        "kind": "audio" if isinstance(first, AudioFrame) else "video",
        "native": native,
        "us_per_frame": round(us, 2),
        "copy_us": round(base, 3),
        "vs_copy": round(us / base, 1) if base > 0 else None,
        "core_share": round(share, 5),
        "streams_per_core": round(1 / share, 1) if share > 0 else None,
    }


def targets(rows: list[dict[str, Any]], vad: dict[str, Any] | None) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for row in rows:
        if row["name"] in BASELINES:
            continue
        limit = TARGETS.get(row["name"], AUDIO_TARGET if row["kind"] == "audio" else None)
        if limit is not None:
            checks[row["name"]] = {
                "core_share": row["core_share"],
                "limit": limit,
                "met": row["core_share"] <= limit,
            }
    if vad:
        checks.update(vad.get("targets", {}))
    return checks


def vad_costs(quick: bool) -> dict[str, Any] | None:
    try:
        module = importlib.import_module("benchmarks._vad_cost")
    except ImportError:
        return None
    result: dict[str, Any] = module.report(quick=quick)
    return result


def table(report: dict[str, Any]) -> str:
    lines = [f"{report['env']['cpu']} ({report['env']['cores']} cores), python {report['env']['python']}"]
    lines.append(
        f"{'processor':<16} {'native input':<34} {'µs/frame':>10} {'x copy':>8} {'core %':>8} "
        f"{'streams/core':>13}"
    )
    for row in report["processors"]:
        lines.append(
            f"{row['name']:<16} {row['native']:<34} {row['us_per_frame']:>10.1f} {row['vs_copy'] or 0:>8.1f} "
            f"{row['core_share'] * 100:>8.3f} {row['streams_per_core'] or 0:>13.0f}"
        )
    if report.get("vad"):
        lines.append(f"vad: {json.dumps({k: v for k, v in report['vad'].items() if k != 'targets'})}")
    lines.append(f"targets: {json.dumps(report['targets'])}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="shorter runs, one repeat")
    parser.add_argument("--only", default="", help="comma-separated processor names")
    parser.add_argument("--no-vad-cost", action="store_true", help="skip the VAD batching/memory comparison")
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core, as a pinned worker
    repeats, min_cpu_s = (1, 0.3) if args.quick else (3, 1.5)
    wanted = {name for name in args.only.split(",") if name}
    rows = [
        measure(name, spec, frames, repeats, min_cpu_s)
        for name, (spec, frames) in collect_inputs().items()
        if not wanted or name in wanted
    ]
    vad = None if args.no_vad_cost or (wanted and "vad" not in wanted) else vad_costs(args.quick)
    report = {
        "env": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "config": {"repeats": repeats, "min_cpu_s": min_cpu_s},
        "processors": rows,
        "vad": vad,
        "targets": targets(rows, vad),
    }
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
