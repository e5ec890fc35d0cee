"""The `loudness` processor offline through the real worker pool (`framepool process`): readings every
second and a summary that agrees with FFmpeg's ebur128 filter on the same file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from tests.support.loudness_refs import as_float, ffmpeg_ebur128, pcm16, tone
from tests.support.timeouts import PROCESS

pytestmark = pytest.mark.process


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = 48000) -> None:
    """Stereo int16 PCM in a WAV file, written by FFmpeg."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=sample_rate, layout="stereo")
        for start in range(0, samples.shape[0], 4800):
            chunk = np.ascontiguousarray(samples[start : start + 4800]).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_framepool_process_measures_a_file_like_ffmpeg(tmp_path: Path) -> None:
    """EBU Tech 3341 case 3 shortened to 10 s: -36, -23, -36 dBFS (the quiet parts fall under the relative
    gate, the blocks across the steps do not: -23.2 LUFS, as FFmpeg reads it)."""
    samples = pcm16(np.concatenate([tone(-36, 2), tone(-23, 6), tone(-36, 2)]))
    path = tmp_path / "programme.wav"
    write_wav(path, samples)
    environ = {
        key: value for key, value in os.environ.items() if not key.startswith(("FRAMEPOOL_", "LIVEKIT_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "framepool.cli", "--workers", "1", "process", str(path),
         "-p", "loudness(channels=2)", "--output", str(tmp_path / "results.jsonl")],
        capture_output=True, text=True, env=environ, timeout=PROCESS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    data = [line["data"] for line in lines if line["topic"] == "loudness"]
    readings, summary = data[:-1], data[-1]
    assert [reading["time_us"] for reading in readings] == [1_000_000 * k for k in range(1, 11)]
    assert summary["event"] == "summary" and summary["duration_ms"] == 10_000

    reference = ffmpeg_ebur128(as_float(samples), 48000)
    assert summary["integrated_lufs"] == pytest.approx(reference.integrated, abs=0.1)
    assert summary["lra_lu"] == pytest.approx(reference.lra, abs=0.1)
    assert summary["true_peak_dbtp"] == pytest.approx(reference.true_peak_dbtp, abs=0.2)
    assert readings[-1]["short_term_lufs"] == pytest.approx(reference.short_term[-1], abs=0.1)
