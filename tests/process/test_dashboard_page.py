"""The status page in headless Chromium against a scripted /status (test process; the page is served by
framepool.ops.dashboard, as the ops server serves it): its script runs under its own Content-Security-Policy,
its rates are the deltas of the counters, strings crafted as markup stay text, it says when /status fails.
The same page against a real daemon: tests/integration/test_dashboard.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from framepool.ops.dashboard import serve_dashboard
from tests.support.chromium import check_screenshot, headless_chromium, open_page
from tests.support.dashboard import HEIGHT, WIDTH, column, shown_figures
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.process

# Room and participant names come from users: each of these would run or add markup if the page parsed it.
ROOM = "<img src=x onerror=\"document.title='injected'\">"
PARTICIPANT = '</script><script>document.title="injected"</script>'
REASON = "<i>ring_full</i>"
STARTED = 1_700_000_000.0


def scripted_status(poll: int) -> dict[str, Any]:
    """/status at its `poll`th answer, one second of server time after the previous one: per second, 100
    frames in, 90 out, 2 dropped, half a CPU second in worker 0."""
    return {
        "version": "9.9.9", "pid": 4242, "started_at": STARTED, "uptime_s": 10.0 + poll,
        "phase": "ready", "live": True, "ready": False, "live_reason": "",
        "ready_reason": "no worker <ready>",
        "loop": {"lag_ms": 1.5, "stalls": 0},
        "agents": [{"name": "", "state": "registered", "worker_id": "AW_x", "load": 0.25,
                    "status": "available", "jobs": 1, "reconnects": 0}],
        "jobs": [{"id": "AJ_x", "agent": "", "room": ROOM, "started_at": STARTED + 5, "streams": 1}],
        "workers": [{"index": 0, "pid": 5151, "cpu": 1, "state": "ready", "pss_bytes": 50 * 2**20,
                     "cpu_seconds": 0.5 * poll, "streams": 1, "restarts": 0}],
        "streams": [{"id": "ST_x", "job": "AJ_x", "room": ROOM, "participant": PARTICIPANT, "track": "TR_x",
                     "kind": "audio", "worker": 0, "frames_in": 100 * poll, "frames_out": 90 * poll,
                     "drops": {REASON: 2 * poll}, "ring_occupancy": 0.25}],
        "totals": {"frames_in": 100 * poll, "frames_out": 90 * poll, "drops": {REASON: 2 * poll},
                   "results": 10 * poll},
        "data": {"intake_messages": 3, "spool_depth": 0, "dead_letters": 0},
    }  # fmt: skip


class ScriptedOps:
    """An HTTP server with the ops server's /dashboard and a scripted /status that can be made to fail."""

    def __init__(self) -> None:
        self.polls = 0
        self.failing = False
        self.app = web.Application()
        self.app.router.add_get("/dashboard", serve_dashboard)
        self.app.router.add_get("/status", self.status)

    async def status(self, request: web.Request) -> web.Response:
        if self.failing:
            return web.Response(status=503, text="scripted failure")
        self.polls += 1
        return web.json_response(scripted_status(self.polls))


@pytest.fixture
async def ops() -> AsyncIterator[tuple[ScriptedOps, str]]:
    server = ScriptedOps()
    runner = web.AppRunner(server.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}/dashboard"
    finally:
        await runner.cleanup()


async def test_the_page_shows_rates_and_user_strings_as_text(
    ops: tuple[ScriptedOps, str], tmp_path: Path
) -> None:
    server, url = ops
    async with (
        headless_chromium(tmp_path / "profile") as browser,
        open_page(browser, url, WIDTH, HEIGHT) as page,
    ):
        plots = ["cpu", "mem", "streams", "frames", "drops", "lag"]
        figures = await asyncio.wait_for(shown_figures(page, plots, points=2), EVENT)
        screenshot = await page.screenshot()
        (tmp_path / "dashboard.png").write_bytes(screenshot)
        check_screenshot(screenshot, WIDTH, HEIGHT)
        server.failing = True
        failed = await asyncio.wait_for(
            page.wait_until('document.getElementById("fetch-error").textContent'), EVENT
        )
        assert failed == "/status unreachable: HTTP 503"
        # The failed polls (one, or more on a slow machine), and nothing before them.
        assert set(page.errors()) == {
            "Failed to load resource: the server responded with a status of 503 (Service Unavailable)"
        }
        assert {urlsplit(u).hostname for u in page.requested_urls()} == {"127.0.0.1"}

    assert figures["title"] == "framepool status"
    assert "img" not in figures["tags"] and "i" not in figures["tags"] and figures["scripts"] == 1
    assert column(figures, "jobs", 0) == [ROOM]
    assert column(figures, "streams", 0) == [ROOM] and column(figures, "streams", 1) == [PARTICIPANT]
    assert figures["legends"]["drops"] == [f"{REASON} 2"]
    assert figures["header"]["reasons"] == "not ready: no worker <ready>"
    assert (figures["header"]["phase"], figures["header"]["live"]) == ("ready", "live")
    # Deltas of the counters over the server's clock, not of the browser's: exact, whatever the poll timing.
    tiles = figures["tiles"]
    assert (tiles["rate-in"], tiles["rate-out"], tiles["rate-drops"]) == ("100", "90", "2")
    [worker] = figures["tables"]["workers"]
    assert worker == ["0", "5151", "1", "ready", "50", "50", "1", "0"]
    assert figures["legends"]["cpu"] == ["worker 0 50"] and figures["legends"]["mem"] == ["worker 0 50"]
    assert figures["tables"]["data"] == [["intake_messages", "3"], ["2 more at 0", ""]]
