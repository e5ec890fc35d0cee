"""Credentials and join tokens for the loopback dev server, and the signal-path fixture's value (test
process).

The fixtures that start dev servers live in tests/integration/conftest.py; this module needs the dev-server
extra (aiortc) through DevServer.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

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
    attributes: dict[str, str] | None = None,
    **grants: Any,
) -> str:
    """A join token for `room` (grants override VideoGrants fields, e.g. can_publish=False; `attributes`
    are the participant's from the start)."""
    token = (
        api.AccessToken(api_key, secret)
        .with_identity(identity)
        .with_name(identity)
        .with_ttl(datetime.timedelta(seconds=ttl))
        .with_grants(api.VideoGrants(room_join=grants.pop("room_join", True), room=room, **grants))
    )
    if kind:
        token = token.with_kind(kind)  # type: ignore[arg-type]
    if attributes:
        token = token.with_attributes(attributes)
    return token.to_jwt()


@dataclass
class SignalMode:
    """A dev server and the RoomOptions that make the SDK use one of its signal paths."""

    name: str
    server: DevServer
    options: rtc.RoomOptions
