"""The webhook sink: room data as signed JSON POSTs (bridge process, aiohttp client).

Body: one event's JSON object (`framepool.bridge.jsonform`) per request, or with `batch = true` one
`{"events": [...]}` object per batch, events in spool order. Headers follow Standard Webhooks
(https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` (Unix seconds of this attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed by the secret's bytes
(a `whsec_<base64>` secret is base64-decoded after the prefix, as the spec's libraries do; any other
string is used as UTF-8). The id is the event id for a single event; for a batch it is
`batch_<first event id>_<last event id>`: the spool's order is fixed, so the same id always means the same
events, and a retry reuses it (with a fresh timestamp and signature).

Answers: 2xx acknowledges. 408, 429, 5xx, a timeout or a connection error raise SinkUnavailable (with the
response's Retry-After in seconds, when it has one); any other status raises SinkRejected for the events
of that request, which go to the dead-letter file. In single mode an event that was acknowledged is not
posted again when the bridge retries the rest of its batch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import aiohttp
import msgspec
from msgspec import Meta

from framepool.bridge.jsonform import event_to_json
from framepool.bridge.sink import SinkRejected, SinkUnavailable
from framepool.processors.messages import DataMessage

RETRYABLE = frozenset({408, 429})


class WebhookConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A webhook sink's options (`[sinks.options]` of a `type = "webhook"` sink)."""

    url: Annotated[str, Meta(pattern=r"^https?://", description="Where to POST, http:// or https://.")]
    secret: Annotated[
        str, Meta(description="Signing secret: `whsec_<base64>` or any string; empty: unsigned.")
    ] = ""
    batch: Annotated[
        bool, Meta(description='One POST per batch ({"events": [...]}) instead of per event.')
    ] = False
    timeout: Annotated[float, Meta(gt=0, description="Seconds one request may take.")] = 10.0
    headers: Annotated[dict[str, str], Meta(description="Extra request headers (e.g. Authorization).")] = {}


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: `whsec_<base64>` decoded, anything else as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode("utf-8")


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (`v1,<base64>`) of one request."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def retry_after(value: str | None) -> float | None:
    """Seconds of a Retry-After header given in seconds (an HTTP date is ignored: the backoff applies)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class WebhookSink:
    """POSTs events to one URL (see the module docstring)."""

    Config: ClassVar[type[msgspec.Struct]] = WebhookConfig

    def __init__(self, name: str, config: WebhookConfig) -> None:
        self.name = name
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._acked: set[str] = set()  # single mode: events of the current batch already acknowledged

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, raise_for_status=False)

    async def deliver(self, batch: Sequence[DataMessage]) -> None:
        if self.config.batch:
            body = msgspec.json.encode({"events": [event_to_json(event) for event in batch]})
            await self._post(f"batch_{batch[0].event_id}_{batch[-1].event_id}", body, batch)
            return
        rejected: list[DataMessage] = []
        reasons: list[str] = []
        for event in batch:
            if event.event_id in self._acked:
                continue
            try:
                await self._post(event.event_id, msgspec.json.encode(event_to_json(event)), [event])
            except SinkRejected as exc:
                rejected.append(event)
                reasons.append(str(exc))
            self._acked.add(event.event_id)
        if rejected:  # the bridge delivers the rest again: the acknowledged ones are skipped then
            raise SinkRejected(reasons[0], rejected)
        self._acked.clear()

    async def _post(self, webhook_id: str, body: bytes, events: Sequence[DataMessage]) -> None:
        assert self._session is not None, "open() first"
        timestamp = int(time.time())
        headers: dict[str, Any] = {**self.config.headers, "content-type": "application/json"}
        headers["webhook-id"] = webhook_id
        headers["webhook-timestamp"] = str(timestamp)
        if self.config.secret:
            headers["webhook-signature"] = sign(self.config.secret, webhook_id, timestamp, body)
        try:
            async with self._session.post(self.config.url, data=body, headers=headers) as response:
                status = response.status
                after = retry_after(response.headers.get("Retry-After"))
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkUnavailable(f"{self.config.url}: {type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            return
        if status in RETRYABLE or status >= 500:
            raise SinkUnavailable(f"{self.config.url} answered {status}", after)
        raise SinkRejected(f"{self.config.url} answered {status}", list(events))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
