"""`dtmf` and `audio-quality` offline: `framepool process` on a WAV file through the real worker pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from tests.support.dtmf_signals import Tone, sequence
from tests.support.timeouts import PROCESS

pytestmark = pytest.mark.process

RATE = 48000
SENT = "0123456789*#ABCD"


def write_wav(path: Path, samples: npt.NDArray[np.int16]) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def test_digits_clipping_and_dropouts_in_a_file(tmp_path: Path) -> None:
    signal = sequence([Tone(key, duration_ms=60) for key in SENT], pause_ms=60, noise_dbfs=-50, rate=RATE)
    loud = np.clip(np.round(46000 * np.sin(2 * np.pi * 97 * np.arange(RATE // 2) / RATE)), -32768, 32767)
    speechless = loud.astype(np.int16) // 4
    speechless[12_000:12_480] = 0  # a 10 ms dropout inside audio
    samples = np.concatenate((signal, loud.astype(np.int16), speechless))
    path = tmp_path / "call.wav"
    write_wav(path, samples)
    output = tmp_path / "results.jsonl"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMEPOOL_", "LIVEKIT_"))}
    command = [sys.executable, "-m", "framepool.cli", "--workers", "1", "process", str(path)]
    command += ["-p", "dtmf,audio-quality(window_ms=60000)", "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, env=environ, timeout=PROCESS)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    dtmf = [line["data"] for line in lines if line["topic"] == "dtmf"]
    assert "".join(data["digit"] for data in dtmf if data["event"] == "digit") == SENT
    assert [data for data in dtmf if data["event"] == "summary"] == [
        {"event": "summary", "digits": SENT, "count": len(SENT)}
    ]
    quality = [line["data"] for line in lines if line["topic"] == "audio-quality"]
    [window] = [data for data in quality if "event" not in data]
    assert window["clipped_samples"] == int(np.count_nonzero((samples == 32767) | (samples == -32768)))
    assert (window["dropouts"], window["dropout_samples"]) == (1, 480)
    [dropout] = [data for data in quality if data.get("event") == "dropout"]
    assert dropout["time_us"] == (signal.size + loud.size + 12_000) * 1_000_000 // RATE
