"""The platform pieces of the processor library through real workers: blobs written beside the results
offline, batching across streams complete before close, and the file's own channel count."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import av
import msgspec
import numpy as np
import pytest

from framepool.offline.runner import OfflineJob, process_file
from framepool.pool import WorkerPool
from framepool.settings import Settings
from tests.support.platform_procs import blob_bytes
from tests.support.pool import AUDIO_10MS, RecordingSink, audio_frame, audio_spec, settings

pytestmark = pytest.mark.process


def write_tone(path: Path, channels: int, seconds: float = 1.0, rate: int = 48000) -> None:
    """A WAV file of a tone with `channels` channels (PCM: decodes exactly)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="stereo" if channels == 2 else "mono")
        t = np.arange(int(seconds * rate)) / rate
        tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        pcm = np.repeat(tone[None, :], channels, axis=0).T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm), format="s16", layout=stream.layout.name)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


async def test_blobs_are_written_beside_the_results_and_named_in_them(tmp_path: Path) -> None:
    source = tmp_path / "tone.wav"
    write_tone(source, 1)
    output = tmp_path / "results.jsonl"
    spec = "tests.support.platform_procs:BlobEmitter(every=25, size=300000, mime_type=image/png)"
    report = await process_file(Settings(workers=1), OfflineJob(source, spec, output=output, summary=False))
    assert not report.failed() and report.lost() == {}
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == 4  # 100 frames of 10 ms, one blob every 25
    for number, line in enumerate(lines, start=1):
        data = line["data"]
        path = Path(data["path"])
        # Its topic is not the processor's name (a spec by path): the name goes first, made path-safe.
        name = f"tests.support.platform_procs_BlobEmitter.blob-emitter-{number}.png"
        assert path == tmp_path / "results.jsonl.blobs" / "audio0" / name
        assert (tmp_path / "results.jsonl.blobs" / "audio0" / name).read_bytes() == blob_bytes(
            number, 300_000
        )
        assert data == {
            "event": "bytes", "path": str(path), "size": 300_000, "name": f"blob-{number}",
            "mime_type": "image/png", "attributes": {"number": str(number)},
        }  # fmt: skip
        assert (line["track"], line["topic"], line["seq"]) == ("audio0", "blob-emitter", number)
        assert line["frame_time_us"] == (25 * number - 1) * 10_000  # the frame that sent it


async def test_a_blob_over_bytes_max_is_the_processors_error(tmp_path: Path) -> None:
    source = tmp_path / "tone.wav"
    write_tone(source, 1, seconds=0.2)
    spec = "tests.support.platform_procs:BlobEmitter(every=5, size=5000)"
    job = OfflineJob(source, spec, output=tmp_path / "r.jsonl", summary=False)
    report = await process_file(Settings(workers=1, bytes_max=4096), job)
    assert report.failed()
    assert any("exceeds bytes_max = 4096" in event for event in report.runs[0].events)
    assert not (tmp_path / "r.jsonl.blobs").exists()


@pytest.mark.parametrize("channels", [1, 2])
async def test_channels_zero_gives_the_files_own_channel_count(tmp_path: Path, channels: int) -> None:
    source = tmp_path / "tone.wav"
    write_tone(source, channels, seconds=0.2)
    output = tmp_path / "results.jsonl"
    job = OfflineJob(source, "tests.support.platform_procs:NativeChannels", output=output, summary=False)
    await process_file(Settings(workers=1), job)
    (line,) = [json.loads(text) for text in output.read_text().splitlines()]
    assert line["data"] == {"channels": channels, "shape": [960, channels]}


async def test_batches_across_streams_are_complete_before_each_close() -> None:
    """Four offline streams of one batching class on one worker: every frame is in exactly one batch, a
    call covers each stream at most once and names as many streams as received its results, and no stream
    closes with frames still queued."""
    pool = WorkerPool(settings(workers=1))
    await pool.start()
    try:
        sinks = [RecordingSink() for _ in range(4)]
        spec = "tests.support.platform_procs:BatchCount"
        streams = [await pool.attach(audio_spec(f"s{i}", spec), sink) for i, sink in enumerate(sinks)]
        for seq in range(1, 51):
            await asyncio.gather(*(s.push_wait(audio_frame(seq), seq * 10_000, AUDIO_10MS) for s in streams))
        for stream in streams:
            await stream.drain()
            await stream.detach()
    finally:
        await pool.aclose()
    calls: dict[int, list[tuple[int, dict[str, object]]]] = {}
    for number, sink in enumerate(sinks):
        batches = [msgspec.json.decode(r.data) for r in sink.results if r.topic == "batch"]
        assert sorted(seq for batch in batches for seq in batch["seqs"]) == list(range(1, 51))
        assert sink.payloads("closed") == [{"pending": 0}]
        assert sink.results[-1].topic == "closed"
        for batch in batches:
            calls.setdefault(batch["call"], []).append((number, batch))
    for served in calls.values():
        numbers = [number for number, _ in served]
        assert len(numbers) == len(set(numbers)) == served[0][1]["streams"]
        assert sum(len(batch["seqs"]) for _, batch in served) == served[0][1]["frames"]
