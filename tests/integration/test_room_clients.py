"""`framepool publish`, `listen` and `dev` against a real dev server, each a real process (test process).

- a media file, looped, reaches a `listen --save` listener as tracks (WAV, PNGs) while a look-alike result
  from an ordinary participant and a byte stream on `snapshot` are printed with their sender's kind and
  saved; a file not looped ends the publisher by itself;
- `framepool dev` uses a dev server already running on its port, and says in one line what to do when the
  port is taken by something that is not one.
"""

from __future__ import annotations

import json
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from livekit import rtc

from framepool.demo.samples import write_test_sample
from framepool.devserver.agents import AGENT_DISPATCHER
from framepool.devserver.server import DevServer
from tests.support.devserver import make_token
from tests.support.quickstart import Terminal

AGENT_TOML = """workers = 1
[[agents]]
agent_name = "meter"
audio = ["audio-level(window_ms=1000)"]
"""


@pytest.fixture
async def foreign_server() -> AsyncIterator[int]:
    """An HTTP server on loopback that is not LiveKit: every path is 404."""
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def test_publish_a_looped_file_to_a_saving_listener(
    devserver: DevServer, room_name: str, tmp_path: Path
) -> None:
    sample = write_test_sample(tmp_path / "one-second.mp4", seconds=1.0, fps=15)
    saved = tmp_path / "saved"
    saved.mkdir()
    url = ["--url", devserver.url]
    listener = await Terminal.start(["listen", "--room", room_name, "--save", str(saved), *url], tmp_path)
    publisher = await Terminal.start(
        ["publish", str(sample.path), "--room", room_name, "--loop", *url], tmp_path
    )
    tester = rtc.Room()
    try:
        await listener.wait_for(r"^track   video 'video' of publisher \(standard\)")
        await tester.connect(devserver.url, make_token("tester", room_name))
        await listener.wait_for(r"^joined  tester \(standard\)")
        look_alike = {"participant": "x", "track": "", "processor": "video-motion", "topic": "t", "data": {}}
        await tester.local_participant.publish_data(json.dumps(look_alike), topic="analysis")
        await tester.local_participant.send_bytes(b"\xff\xd8jpeg", topic="snapshot", name="snap.jpg")
        await listener.wait_for(r"^result  video-motion topic='analysis' about x from tester \(standard\)")
        await listener.wait_for(r"^bytes   topic='snapshot' from tester: 'snap.jpg' .* 6 B -> ")
        await publisher.wait_for(r"^sent 5 s: ")  # 5 s of media from a 1 s file: it looped
        await listener.interrupt()
        assert await listener.exit_status() == 0, listener.output()
    finally:
        await tester.disconnect()
        await publisher.interrupt()
        assert await publisher.exit_status() == 0, publisher.output()
        for terminal in (listener, publisher):
            await terminal.kill()
    lines = [json.loads(line) for line in (saved / "results.jsonl").read_text().splitlines()]
    assert lines == [{"time": lines[0]["time"], "from": "tester", "kind": "standard", "topic": "analysis",
                      "message": look_alike}]  # fmt: skip
    assert [path.read_bytes() for path in (saved / "bytes").iterdir()] == [b"\xff\xd8jpeg"]
    with wave.open(str(saved / "publisher" / "audio.wav")) as audio:
        assert (audio.getframerate(), audio.getnchannels()) == (48000, 1)
        assert audio.getnframes() > 48000  # more than the file's one second: the loop went on
    pngs = sorted(path.name for path in (saved / "publisher").glob("video-*.png"))
    assert pngs[:2] == ["video-000000.png", "video-000030.png"]


async def test_publish_a_file_ends_at_its_end(devserver: DevServer, room_name: str, tmp_path: Path) -> None:
    sample = write_test_sample(tmp_path / "one-second.webm", seconds=1.0, fps=15)
    publisher = await Terminal.start(
        ["publish", str(sample.path), "--room", room_name, "--url", devserver.url], tmp_path
    )
    try:
        await publisher.wait_for(r"^published .* audio 48000 Hz mono, video 320x240;")
        assert await publisher.exit_status() == 0, publisher.output()
    finally:
        await publisher.kill()
    assert "end of file after" in publisher.lines[-1] and "sent 15 video frames" in publisher.lines[-1]


async def test_dev_uses_the_dev_server_already_running(devserver: DevServer, tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(AGENT_TOML)
    port = str(devserver.port)
    dev = await Terminal.start(["dev", "--config", "agent.toml", "--dev-port", port], tmp_path)
    try:
        await dev.wait_for(rf"^using the dev server already running at ws://127.0.0.1:{port}$")
        await dev.wait_for(r"registered 1 agent\(s\): meter/JT_ROOM")
        dispatcher = devserver.app[AGENT_DISPATCHER]
        assert [worker.agent_name for worker in dispatcher.workers.values()] == ["meter"]
        await dev.interrupt()
        assert await dev.exit_status() == 0, dev.output()
    finally:
        await dev.kill()


async def test_dev_on_a_port_taken_by_something_else_says_so(foreign_server: int, tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(AGENT_TOML)
    dev = await Terminal.start(["dev", "--config", "agent.toml", "--dev-port", str(foreign_server)], tmp_path)
    try:
        assert await dev.exit_status() == 2
    finally:
        await dev.kill()
    assert dev.lines == [
        f"framepool: 127.0.0.1:{foreign_server} is taken by something that is not a LiveKit dev server "
        "taking devkey: point framepool at your LiveKit with LIVEKIT_URL, LIVEKIT_API_KEY and "
        "LIVEKIT_API_SECRET, or give the dev server another port with --dev-port"
    ]
