"""Fixtures of the integration tier: loopback dev servers and clients for them (test process)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from livekit import api, rtc

from framepool.devserver.server import DevServer
from tests.support.devserver import API_KEY, API_SECRET, SignalMode


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


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on, bound for the whole test so nothing else can take it (never a port found
    free and bound later: another process may take it in between)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
