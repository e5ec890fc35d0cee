"""The first failed connection to LiveKit says what failed in one line, before the retries continue (test
process; the real agent connection against the loopback dev server, a closed port and an unresolvable host).

No internet here: the unresolvable host is in `.invalid`, which RFC 6761 reserves to never resolve.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from framepool.agent.connection import AgentConnection
from framepool.agent.registration import ConnectionOptions, Registration
from framepool.devserver.server import DevServer
from framepool.errors import ServerUnavailableError
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration

ATTEMPTS = 3  # one first-failure line, then the retries at INFO, then the fatal error


@pytest.mark.parametrize(
    ("target", "cause"),
    [
        ("refused", "connection refused by 127.0.0.1:"),
        ("dns", "DNS: cannot resolve framepool-test.invalid"),
        ("tls", "TLS handshake with 127.0.0.1:"),
        ("http", "HTTP 404"),
    ],
)
async def test_first_failed_connection_is_one_line_naming_the_cause(
    devserver: DevServer, closed_port: int, caplog: pytest.LogCaptureFixture, target: str, cause: str
) -> None:
    url = {
        "refused": f"ws://127.0.0.1:{closed_port}",
        "dns": "ws://framepool-test.invalid:7880",
        "tls": devserver.url.replace("ws://", "wss://"),  # TLS spoken to a plain-HTTP server
        "http": devserver.url + "/not-livekit",  # the dev server answers 404 for <url>/not-livekit/agent
    }[target]
    options = ConnectionOptions(
        url=url,
        api_key=API_KEY,
        api_secret=API_SECRET,
        status_interval=1.0,
        assignment_timeout=1.0,
        max_retry=ATTEMPTS,
    )
    # No job host: a connection that never registers never asks it anything.
    connection = AgentConnection(Registration(), options, host=None)  # type: ignore[arg-type]
    with (
        caplog.at_level(logging.INFO, logger="framepool.agent.connection"),
        pytest.raises(ServerUnavailableError, match=f"after {ATTEMPTS} attempts: {cause}"),
    ):
        async with asyncio.timeout(EVENT):
            await connection.run()
    records = [r for r in caplog.records if r.name == "framepool.agent.connection"]
    loud = [r for r in records if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [r.getMessage() for r in loud]
    line = loud[0].getMessage()
    assert f"cannot connect to LiveKit at {url}: {cause}" in line and "\n" not in line
    assert [r.levelno for r in records] == [logging.WARNING] + [logging.INFO] * (ATTEMPTS - 2)
