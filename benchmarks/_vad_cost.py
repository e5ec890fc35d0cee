"""What batching and one model per worker save for `vad` (benchmark process and its children).

    .venv/bin/python benchmarks/_vad_cost.py            # both measures, small sizes, printed as JSON

`batched_vs_separate` runs the same audio of `streams` streams two ways in this process, one after the other:
one Silero session with every stream's chunks in one inference per pass (what a worker does), and one
session per stream, each called for its own stream (what `streams` separate VAD instances do). It returns
the CPU time of each (time.process_time, the model calls and the queueing; the segmentation is the same in
both and left out) and their ratio: the issue's target is a ratio of at most 0.5 at 32 streams.

`memory_per_stream` measures PSS (proportional set size, /proc/<pid>/smaps_rollup through psutil) of child
processes that load the model: one process with 1 `vad` stream and one with `streams` streams (the model
once, the worker's way), and `streams` processes with one stream each (a model per stream, the way a
process-per-job framework loads it). Per extra stream: the PSS growth of the shared process per stream
added, against the PSS each separate process costs (the model, onnxruntime and Python itself: a process per
job pays all of them). Target: at most 1 MB per extra stream.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from framepool.processors import instantiate, parse_spec  # noqa: E402
from framepool.processors._silero import SileroBatch, SileroStream, load_batch  # noqa: E402
from framepool.processors.vad import Vad  # noqa: E402
from tests.support.context import RecordingContext, audio_frames  # noqa: E402
from tests.support.speech_corpus import RATE, mix, speech_track  # noqa: E402

FRAME_SAMPLES = RATE * 64 // 1000  # vad's default 64 ms frames


def stream_audio(streams: int, seconds: float) -> list[np.ndarray]:
    """Different noisy speech for each stream (voices, sentences, noise kind and SNR vary)."""
    kinds = ["white", "pink", "babble"]
    tracks = [speech_track(seconds, seed=index) for index in range(min(streams, 8))]
    return [
        mix(tracks[index % len(tracks)], kinds[index % 3], (20, 10, 5, 0)[index % 4], seed=index)[
            : int(seconds * RATE)
        ]
        for index in range(streams)
    ]


def _cpu_of(batches: list[SileroBatch], owners: list[int], audio: list[np.ndarray]) -> float:
    """CPU seconds to push every stream's frames, a pass at a time, running each batch after each pass."""
    streams = [SileroStream(batches[owner], RATE, lambda values: None) for owner in owners]
    started = time.process_time()
    for offset in range(0, min(a.size for a in audio), FRAME_SAMPLES):
        for stream, samples in zip(streams, audio, strict=True):
            stream.push(samples[offset : offset + FRAME_SAMPLES])
        for batch in batches:
            batch.run()
    return time.process_time() - started


def batched_vs_separate(streams: int = 32, seconds: float = 10.0) -> dict[str, Any]:
    audio = stream_audio(streams, seconds)
    shared = load_batch()
    separate = [load_batch() for _ in range(streams)]
    _cpu_of([shared], [0] * streams, [a[: RATE // 2] for a in audio])  # warm-up: first calls allocate
    _cpu_of(separate, list(range(streams)), [a[: RATE // 2] for a in audio])
    batched_cpu = _cpu_of([shared], [0] * streams, audio)
    separate_cpu = _cpu_of(separate, list(range(streams)), audio)
    return {
        "streams": streams,
        "audio_seconds_per_stream": seconds,
        "batched_cpu_s": round(batched_cpu, 4),
        "separate_cpu_s": round(separate_cpu, 4),
        "ratio": round(batched_cpu / separate_cpu, 3),
        "batched_cpu_pct_per_stream": round(100 * batched_cpu / seconds / streams, 3),
        "separate_cpu_pct_per_stream": round(100 * separate_cpu / seconds / streams, 3),
    }


def _hold_streams(count: int) -> None:
    """Child: `count` vad streams in this process (one model), each fed 2 s, then wait for stdin to close."""
    audio = stream_audio(count, 2.0)
    processors = [instantiate(parse_spec("vad")) for _ in range(count)]
    contexts = [RecordingContext(f"s{index}") for index in range(count)]
    feeds = [list(audio_frames(samples, RATE, 64)) for samples in audio]
    for step in range(min(len(feed) for feed in feeds)):
        for processor, ctx, feed in zip(processors, contexts, feeds, strict=True):
            processor.process(feed[step], ctx)
        Vad.end_of_drain()
    print("ready", flush=True)
    sys.stdin.read()


def _children_pss(counts: list[int]) -> list[int]:
    """PSS in bytes of one child per entry of `counts`, all alive together, each holding that many streams."""
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--hold", str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for count in counts
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        return [psutil.Process(child.pid).memory_full_info().pss for child in children]
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
            child.wait()


def memory_per_stream(streams: int = 32, separate_processes: int = 8) -> dict[str, Any]:
    """Shared: 1 and `streams` streams in one process each. Separate: `separate_processes` processes of one
    stream each (~100 MB apiece, so fewer than `streams` by default; the cost per stream is their mean)."""
    [one, many] = _children_pss([1, streams])
    separate = _children_pss([1] * separate_processes)
    return {
        "streams": streams,
        "separate_processes": separate_processes,
        "shared_one_stream_mb": round(one / 2**20, 2),
        "shared_all_streams_mb": round(many / 2**20, 2),
        "shared_extra_stream_mb": round((many - one) / (streams - 1) / 2**20, 3),
        "separate_processes_total_mb": round(sum(separate) / 2**20, 1),
        "separate_per_stream_mb": round(sum(separate) / separate_processes / 2**20, 2),
    }


def report(quick: bool = False) -> dict[str, Any]:
    """Both measures at 32 streams, and the issue's targets judged on them (benchmarks/processors.py)."""
    cpu = batched_vs_separate(32, 3.0 if quick else 10.0)
    memory = memory_per_stream(32, 4 if quick else 8)
    return {
        "cpu": cpu,
        "memory": memory,
        "targets": {
            "vad batched over 32 streams / 32 sessions": {
                "ratio": cpu["ratio"],
                "limit": 0.5,
                "met": cpu["ratio"] <= 0.5,
            },
            "vad PSS per extra stream (MB)": {
                "mb": memory["shared_extra_stream_mb"],
                "limit": 1.0,
                "met": memory["shared_extra_stream_mb"] <= 1.0,
            },
        },
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hold"]:
        _hold_streams(int(sys.argv[2]))
    else:
        print(json.dumps({"cpu": batched_vs_separate(8, 2.0), "memory": memory_per_stream(8, 2)}, indent=2))
