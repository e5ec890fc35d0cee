"""`make demo` (`python -m framepool.demo`; supervisor process): the offline pipeline end to end.

Generates a deterministic 10 s sample (a 440 Hz tone with a louder passage, colour bars with a square that
moves, stops, and moves again), runs it through the real worker pool with `audio-level` and
`video-motion` exactly as `framepool process` does, and writes demo-out/results.jsonl and
demo-out/processed.mp4 (the motion processor's difference image). Then it reads the results back and
shows what the processors saw: the loud passage and the motion intervals the sample was built with.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from framepool import loop as framepool_loop
from framepool import settings as settings_module
from framepool.errors import EXIT_INTERRUPTED, FramepoolError
from framepool.logs import setup_logging
from framepool.offline import OfflineJob, process_file, summary
from framepool.samples import DEFAULT_LOUD, DEFAULT_MOVING, write_test_sample

PROCESSORS = "audio-level(window_ms=500, frame_ms=100),video-motion(visualize=true, threshold=4)"


def describe(results_path: Path) -> list[str]:
    """What the results say about the sample: level changes and motion events."""
    lines = []
    levels: list[tuple[float, float]] = []
    for raw in results_path.read_text().splitlines():
        result: dict[str, Any] = json.loads(raw)
        payload = result["payload"]
        if result["topic"] == "audio-level" and not payload.get("partial"):
            levels.append((payload["start_us"] / 1e6, payload["rms_dbfs"]))
        elif result["topic"] == "video-motion" and "event" in payload and payload["frame_ts_us"] is not None:
            at = payload["frame_ts_us"] / 1e6
            lines.append(f"  {at:5.2f} s  {payload['event']} (score {payload['score']})")
    if levels:
        typical = sorted(rms for _, rms in levels)[len(levels) // 2]
        loud = [start for start, rms in levels if rms > typical + 6]
        summary = f"  typical level {typical} dBFS RMS (a sine at 0.1 of full scale is -23.01)"
        if loud:
            summary += f"; louder from {min(loud):.1f} s to {max(loud) + 0.5:.1f} s"
        lines.insert(0, summary)
    return lines


def run_demo(out_dir: Path, seconds: float) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    sample = out_dir / "sample.mp4"
    info = write_test_sample(sample, seconds)
    moving = ", ".join(f"{a:g}-{b:g} s" for a, b in DEFAULT_MOVING)
    print(
        f"sample: {sample} ({info.video_frames} video frames {info.width}x{info.height}, {seconds:g} s of 440 Hz tone)"
    )
    print(f"  built with loud audio at {DEFAULT_LOUD[0]:g}-{DEFAULT_LOUD[1]:g} s and motion at {moving}")
    settings = settings_module.load()
    if settings.log_format == "auto":  # a person watches the demo: human log lines, in the workers too
        settings = msgspec.structs.replace(settings, log_format="text")
    setup_logging(settings.log_level, settings.log_format)
    job = OfflineJob(sample, PROCESSORS, out_dir / "results.jsonl", out_dir / "processed.mp4")
    report = framepool_loop.run(process_file(settings, job))
    print(summary(job, report))
    print("what the processors saw:")
    print("\n".join(describe(out_dir / "results.jsonl")))
    lost = report.lost()
    if lost or report.failed():
        print(f"framepool demo: FAILED (lost frames {lost}, stream events {[r.events for r in report.runs]})")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framepool.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="Output directory (default demo-out)."
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of the sample (default 10).")
    args = parser.parse_args(argv)
    try:
        return run_demo(args.out, args.seconds)
    except FramepoolError as exc:
        print(f"framepool demo: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
