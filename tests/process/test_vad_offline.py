"""`vad` and `silence` offline through the real worker pool (`framepool process`): the same events as the
processors give on the same decoded audio in the test process."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from framepool.offline.runner import OfflineJob, process_file
from framepool.processors import instantiate, parse_spec
from framepool.settings import Settings
from tests.support.context import audio_frames, run
from tests.support.speech_corpus import RATE, mix, speech_track

pytestmark = pytest.mark.process


def write_wav(path: Path, audio: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


async def offline_results(path: Path, specs: str, output: Path) -> list[dict[str, object]]:
    report = await process_file(Settings(workers=1), OfflineJob(path, specs, output=output, summary=False))
    assert report.lost() == {} and not report.failed()
    text = output.read_text()  # noqa: ASYNC240  (the job has ended; a small file)
    return [json.loads(line) for line in text.splitlines()]


def in_process(spec: str, audio: np.ndarray) -> list[object]:
    processor = instantiate(parse_spec(spec))
    frame_ms = processor.input_format(processor.params).frame_ms
    return [payload for _topic, payload in run(processor, audio_frames(audio, RATE, frame_ms)).results]


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    audio = mix(speech_track(8, seed=11), "pink", 20, seed=12)
    audio[RATE * 2 : RATE * 4] = 0  # two seconds of digital silence as well
    path = tmp_path_factory.mktemp("vad") / "speech.wav"
    write_wav(path, audio)
    return path, audio


@pytest.mark.parametrize(
    "specs",
    [
        ["vad(min_speech_ms=100)", "silence(duration=0.5, sample_rate=16000)"],
        ["silence(mode=vad, duration=0.5)"],
    ],
)
async def test_the_pool_gives_the_events_of_the_processor_itself(
    speech_file: tuple[Path, np.ndarray], specs: list[str], tmp_path: Path
) -> None:
    """Offline through the pool (model in the worker, batches at end_of_drain), the same events as the
    processors fed the same 16 kHz audio here."""
    path, audio = speech_file
    lines = await offline_results(path, ",".join(specs), tmp_path / "results.jsonl")
    for spec in specs:
        name = spec.split("(")[0]
        produced = [line["data"] for line in lines if line["processor"] == name]
        expected = in_process(spec, audio)
        assert produced == expected
        assert any(isinstance(data, dict) and data["event"].endswith("_start") for data in expected)
