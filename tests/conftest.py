"""Shared pytest fixtures: the loopback dev server and access tokens for it."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from livekit import api, rtc

from framepool.devserver.server import DevServer

API_KEY = "devkey"
API_SECRET = "secret"


def make_token(
    identity: str,
    room: str,
    *,
    secret: str = API_SECRET,
    ttl: float = 600.0,
    kind: str = "",
    api_key: str = API_KEY,
    **grants: Any,
) -> str:
    """A join token for `room` (grants override VideoGrants fields, e.g. can_publish=False)."""
    token = (
        api.AccessToken(api_key, secret)
        .with_identity(identity)
        .with_name(identity)
        .with_ttl(datetime.timedelta(seconds=ttl))
        .with_grants(api.VideoGrants(room_join=grants.pop("room_join", True), room=room, **grants))
    )
    if kind:
        token = token.with_kind(kind)  # type: ignore[arg-type]
    return token.to_jwt()


@pytest.fixture
def room_name() -> str:
    """A fresh room per test so tests sharing one server stay isolated."""
    return f"room-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def devserver() -> AsyncIterator[DevServer]:
    server = DevServer(port=0, keys={API_KEY: API_SECRET}, departure_timeout=0.5)
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


@dataclass
class SignalMode:
    """A dev server and the RoomOptions that make the SDK use one of its signal paths."""

    name: str
    server: DevServer
    options: rtc.RoomOptions


@pytest.fixture(params=["single_pc", "classic", "fallback"])
async def signal_mode(request: pytest.FixtureRequest) -> AsyncIterator[SignalMode]:
    """single_pc: /rtc/v1 (the SDK default); classic: /rtc with two peer connections, chosen by the client;
    fallback: default options against a server without /rtc/v1, so the SDK falls back to /rtc on 404."""
    name: str = request.param
    server = DevServer(
        port=0, keys={API_KEY: API_SECRET}, departure_timeout=0.5, signal_v1=name != "fallback"
    )
    options = rtc.RoomOptions(single_peer_connection=False) if name == "classic" else rtc.RoomOptions()
    await server.start()
    try:
        yield SignalMode(name, server, options)
    finally:
        await server.aclose()


@pytest.fixture
async def lkapi(devserver: DevServer) -> AsyncIterator[api.LiveKitAPI]:
    """A real livekit-api client with admin credentials for the test's dev server."""
    client = api.LiveKitAPI(devserver.http_url, API_KEY, API_SECRET)
    try:
        yield client
    finally:
        await client.aclose()
