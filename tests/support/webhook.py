"""A real webhook receiver on loopback for the bridge tests (test process): aiohttp, Standard Webhooks
signature checked on every attempt, answers scripted per test, can go down and come back on the same port.

    receiver = WebhookReceiver(secret)
    await receiver.start()
    receiver.answers.extend([503, 503])        # the next two attempts get 503, then 200 again
    receiver.refuse = lambda event: 400 if event["topic"] == "bad" else None
    await receiver.wait_for_events(10)         # event-driven: a condition notified on every attempt
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.timeouts import EVENT


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check, as docs/dataflows.md shows it: any `v1,` signature of id.timestamp.body matches."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [
        item.partition(",")[2]
        for item in headers.get("webhook-signature", "").split()
        if item.startswith("v1,")
    ]
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


@dataclass
class Attempt:
    webhook_id: str
    status: int
    verified: bool
    events: list[dict[str, Any]]


@dataclass
class WebhookReceiver:
    secret: str
    answers: deque[int] = field(default_factory=deque)  # statuses for the next attempts, then 200
    refuse: Callable[[dict[str, Any]], int | None] = lambda event: None  # a status to refuse an event with
    retry_after: str | None = None  # Retry-After sent with non-2xx answers
    attempts: list[Attempt] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        """Listen (again, on the same port after `stop`)."""
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Go down: connections refused until `start`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {key.lower(): value for key, value in request.headers.items()}
        data = json.loads(body)
        events = data.get("events", [data])
        status = self.answers.popleft() if self.answers else 200
        refusals = [code for code in map(self.refuse, events) if code is not None]
        if status == 200 and refusals:
            status = refusals[0]
        self.attempts.append(
            Attempt(headers["webhook-id"], status, verify(self.secret, headers, body), events)
        )
        async with self._changed:
            self._changed.notify_all()
        extra = {"Retry-After": self.retry_after} if self.retry_after and status != 200 else {}
        return web.Response(status=status, headers=extra)

    def delivered(self) -> list[dict[str, Any]]:
        """Events of acknowledged attempts, in arrival order (an event delivered twice appears twice)."""
        return [event for attempt in self.attempts if attempt.status == 200 for event in attempt.events]

    def delivered_ids(self) -> set[str]:
        return {event["event_id"] for event in self.delivered()}

    async def wait_until(self, predicate: Callable[[], bool], within: float = EVENT) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_for_events(self, count: int, within: float = EVENT) -> None:
        """Until `count` distinct events were acknowledged."""
        await self.wait_until(lambda: len(self.delivered_ids()) >= count, within)
