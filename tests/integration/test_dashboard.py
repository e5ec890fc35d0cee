"""The status page of a real `framepool start` in headless Chromium: served by the daemon's ops server at
/dashboard, it shows the live figures of the daemon's own /status (its workers' pids, the job's room, the
agent registered, frames flowing) and plots them; it logs no error, requests nothing beyond the daemon, and
a screenshot of it is a real picture (test process; the real daemon, dev server and SDK)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psutil
import pytest

from framepool.devserver.server import DevServer
from tests.support.chromium import check_screenshot, headless_chromium, open_page
from tests.support.daemon import assert_gone, exit_status, logged, read_log, start_with_config
from tests.support.dashboard import HEIGHT, WIDTH, column, shown_figures
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.sdk import agent_of, joined, publish_tone, stop
from tests.support.servers import free_port
from tests.support.timeouts import EVENT, PROCESS

pytestmark = pytest.mark.integration

CONFIG = """
[[agents]]
agent_name = ""
audio = ["audio-level(window_ms=100)"]
"""


async def test_the_dashboard_shows_a_running_daemon(
    devserver: DevServer, room_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    # The environment, not the file: it wins over the file, and tests/conftest.py sets FRAMEPOOL_HTTP_PORT=0.
    monkeypatch.setenv("FRAMEPOOL_HTTP_HOST", "127.0.0.1")
    monkeypatch.setenv("FRAMEPOOL_HTTP_PORT", str(port))
    config = tmp_path / "framepool.toml"
    config.write_text(CONFIG)
    process = await start_with_config(devserver.url, API_KEY, API_SECRET, config)
    seen: list[str] = []
    try:
        arrived = asyncio.Event()
        reading = asyncio.ensure_future(read_log(process, seen, arrived))
        await asyncio.wait_for(logged(seen, arrived, "registered 1 agent"), PROCESS)
        async with joined(devserver, "alice", room_name) as alice:
            _, feeding = await publish_tone(alice)
            try:
                await asyncio.wait_for(agent_of(alice), EVENT)
                status = await get_status(port)
                pids = [str(worker["pid"]) for worker in status["workers"]]
                # The page's pids are the daemon's own: /status names its real children.
                children = {str(child.pid) for child in psutil.Process(process.pid).children(recursive=True)}
                assert pids and set(pids) <= children, (pids, children)
                await shows_the_daemon(tmp_path, f"http://127.0.0.1:{port}/dashboard", room_name, pids)
            finally:
                await stop(feeding)
        process.send_signal(signal.SIGTERM)
        reading.cancel()
        status_code, log = await exit_status(process, seen)
        assert status_code == 0, log
        await assert_gone([int(pid) for pid in pids])
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def get_status(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/status") as response:
        assert response.status == 200
        status: dict[str, Any] = await response.json()
    return status


async def shows_the_daemon(tmp_path: Path, url: str, room: str, pids: list[str]) -> None:
    """Chromium at `url` shows `room` as a job and `pids` as the workers, with frames flowing and two
    points in the plots (so at least two polls, and rates from their deltas)."""
    until = (
        f"figures.tables.jobs.some((row) => row[0] === {json.dumps(room)})"
        " && parseFloat(figures.tiles['rate-in']) > 0"
    )
    async with (
        headless_chromium(tmp_path / "profile") as browser,
        open_page(browser, url, WIDTH, HEIGHT) as page,
    ):
        figures = await asyncio.wait_for(
            shown_figures(page, ["cpu", "mem", "frames", "lag"], 2, until), EVENT
        )
        screenshot = await page.screenshot()
        errors, urls = page.errors(), page.requested_urls()
    (tmp_path / "dashboard.png").write_bytes(screenshot)
    check_screenshot(screenshot, WIDTH, HEIGHT)
    assert not errors
    assert {urlsplit(u).hostname for u in urls} == {"127.0.0.1"}, urls
    assert sorted(column(figures, "workers", 1)) == sorted(pids)
    assert [f"worker {n}" for n in range(len(pids))] == [
        legend.rsplit(" ", 1)[0] for legend in figures["legends"]["cpu"]
    ]
    assert column(figures, "agents", 1) == ["registered"]
    header = figures["header"]
    assert (header["phase"], header["live"], header["ready"], header["reasons"]) == (
        "ready",
        "live",
        "ready",
        "",
    )
    assert room in column(figures, "streams", 0)
