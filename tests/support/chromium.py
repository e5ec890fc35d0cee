"""Headless Chromium driven over the DevTools protocol (test process): one page opened at a URL, what it
logged as errors, every request it made, a DOM condition awaited inside the page, a screenshot.

Debian's `chromium` (tests/support/servers.py names the package). It runs in its own session with a
throwaway profile and is killed with every process it started when the context ends.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from PIL import Image

from tests.support.timeouts import EVENT, PROCESS

LISTENING = re.compile(r"DevTools listening on (ws://\S+)")
# Quiet and offline: no first-run UI, no background fetches by the browser itself, no GPU in a container.
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
    "--no-first-run",
    "--disable-gpu",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
)


def chromium_binary() -> str | None:
    return shutil.which("chromium")


class DevToolsError(Exception):
    """A DevTools command answered with an error."""


class DevTools:
    """One DevTools websocket: commands awaited by id, every event kept in arrival order."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._waiters: list[tuple[str, str | None, asyncio.Future[dict[str, Any]]]] = []

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> Any:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        answer = self._pending[message["id"]] = asyncio.get_running_loop().create_future()
        await self._socket.send_str(json.dumps(message))
        reply = await asyncio.wait_for(answer, EVENT)
        if "error" in reply:
            raise DevToolsError(f"{method}: {reply['error']}")
        return reply["result"]

    def next_event(self, method: str, session: str | None) -> asyncio.Future[dict[str, Any]]:
        """A future for the params of the next `method` event of `session` (ask before causing it)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((method, session, future))
        return future

    async def read(self) -> None:
        async for message in self._socket:
            data = json.loads(message.data)
            if "id" in data:
                self._pending.pop(data["id"]).set_result(data)
                continue
            self.events.append(data)
            for waiter in list(self._waiters):
                method, session, future = waiter
                if data["method"] == method and data.get("sessionId") == session:
                    self._waiters.remove(waiter)
                    if not future.done():
                        future.set_result(data["params"])


class Page:
    """A tab attached with a flat session: commands, events and evaluation in that page only."""

    def __init__(self, devtools: DevTools, session: str) -> None:
        self.devtools = devtools
        self.session = session

    async def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self.devtools.send(method, params, self.session)

    def _events(self, *methods: str) -> list[dict[str, Any]]:
        return [
            event["params"]
            for event in self.devtools.events
            if event.get("sessionId") == self.session and event["method"] in methods
        ]

    async def evaluate(self, expression: str) -> Any:
        """The value of `expression` in the page, awaited if it is a promise."""
        reply = await self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
        )
        if "exceptionDetails" in reply:
            raise DevToolsError(f"page threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_until(self, condition: str) -> Any:
        """The first truthy value of the JS expression `condition`, re-evaluated by the page at every
        change of its DOM (a MutationObserver: the page tells when, nobody polls)."""
        observer = f"""new Promise((resolve) => {{
            const check = () => {{
                const value = ({condition});
                if (value) {{ observer.disconnect(); resolve(value); }}
            }};
            const observer = new MutationObserver(check);
            const everything = {{subtree: true, childList: true, characterData: true, attributes: true}};
            observer.observe(document, everything);
            check();
        }})"""
        return await self.evaluate(observer)

    def errors(self) -> list[str]:
        """Everything the page reported as an error: console.error, uncaught exceptions, and the browser's
        own log for it (failed loads, Content-Security-Policy refusals)."""
        found = [
            " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"])
            for params in self._events("Runtime.consoleAPICalled")
            if params["type"] in ("error", "assert")
        ]
        found += [p["exceptionDetails"].get("text", "") for p in self._events("Runtime.exceptionThrown")]
        found += [
            p["entry"]["text"] for p in self._events("Log.entryAdded") if p["entry"]["level"] == "error"
        ]
        return found

    def requested_urls(self) -> list[str]:
        return [params["request"]["url"] for params in self._events("Network.requestWillBeSent")]

    async def screenshot(self) -> bytes:
        reply = await self.send("Page.captureScreenshot", {"format": "png"})
        return base64.b64decode(reply["data"])


@asynccontextmanager
async def open_page(devtools: DevTools, url: str, width: int, height: int) -> AsyncIterator[Page]:
    """A new tab of `width`×`height` CSS pixels (scale 1) that has loaded `url`."""
    target = await devtools.send("Target.createTarget", {"url": "about:blank"})
    attached = await devtools.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
    page = Page(devtools, attached["sessionId"])
    for domain in ("Page", "Runtime", "Log", "Network"):
        await page.send(f"{domain}.enable")
    await page.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    loaded = devtools.next_event("Page.loadEventFired", page.session)
    navigated = await page.send("Page.navigate", {"url": url})
    assert "errorText" not in navigated, navigated
    await asyncio.wait_for(loaded, EVENT)
    try:
        yield page
    finally:
        with suppress(DevToolsError, asyncio.TimeoutError, ConnectionError):
            await devtools.send("Target.closeTarget", {"targetId": target["targetId"]})


async def _devtools_url(stderr: asyncio.StreamReader, log: list[str]) -> str:
    while line := (await stderr.readline()).decode(errors="replace"):
        log.append(line)
        if match := LISTENING.search(line):
            return match.group(1)
    raise RuntimeError("chromium exited before it listened for DevTools:\n" + "".join(log[-20:]))


async def _drain(stderr: asyncio.StreamReader, log: list[str]) -> None:
    while line := await stderr.readline():
        log.append(line.decode(errors="replace"))


@asynccontextmanager
async def headless_chromium(profile: Path) -> AsyncIterator[DevTools]:
    """Chromium with its profile in `profile`, connected over DevTools. On exit it and every process it
    started are killed, and the exit fails if any of them outlives SIGKILL."""
    binary = chromium_binary()
    assert binary is not None, "chromium is not installed (make servers)"
    process = await asyncio.create_subprocess_exec(
        binary, *FLAGS, f"--user-data-dir={profile}", "about:blank",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    assert process.stderr is not None
    log: list[str] = []
    draining: asyncio.Future[None] | None = None
    try:
        url = await asyncio.wait_for(_devtools_url(process.stderr, log), PROCESS)
        draining = asyncio.ensure_future(_drain(process.stderr, log))  # a full pipe would block Chromium
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as socket:
            devtools = DevTools(socket)
            reading = asyncio.ensure_future(devtools.read())
            try:
                yield devtools
            finally:
                reading.cancel()
    finally:
        await _kill(process)
        if draining is not None:
            draining.cancel()


async def _kill(process: asyncio.subprocess.Process) -> None:
    family: list[psutil.Process] = []
    with suppress(psutil.NoSuchProcess):
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for proc in family:  # a helper that left the session
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    await process.wait()
    _, alive = await asyncio.to_thread(psutil.wait_procs, family, timeout=EVENT)
    assert not alive, f"chromium processes survived SIGKILL: {alive}"


def check_screenshot(png: bytes, width: int, height: int) -> None:
    """`png` is a PNG of `width`×`height` that shows something: a page that failed to render is one flat
    colour, a rendered dashboard has text, badges and plot lines in many."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG"
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (width, height)
        colours = image.convert("RGB").getcolors(maxcolors=width * height)
    assert colours is not None and len(colours) >= 64, (
        f"a near-blank screenshot: {len(colours or [])} colours"
    )
