"""What `framepool publish`, `listen` and `dispatch` share: where LiveKit is, join tokens, joining with
one-line errors, and telling a dev server from something else on its port (client process: each of these
commands is its own process, with no supervisor and no workers; `framepool dev` uses the probe in the
supervisor process before it starts).

Defaults follow LiveKit's `lk` CLI: `--url`, `--api-key`, `--api-secret`, else LIVEKIT_URL,
LIVEKIT_API_KEY, LIVEKIT_API_SECRET; with none of them set, the loopback dev server that `framepool
devserver` and `framepool dev` run (ws://127.0.0.1:7880, devkey / secret), so the quick start needs no
exports. A URL given without keys gets the dev keys only on loopback, where a dev server is what runs
(`framepool devserver --port N`, `livekit-server --dev`): anywhere else missing keys are one line, not a
token the server refuses later. The secret is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import urllib.parse
from dataclasses import dataclass

import aiohttp
from livekit import api, rtc

from framepool.agent.registration import http_url, ws_url
from framepool.errors import ConfigError, ServerUnavailableError

DEV_HOST = "127.0.0.1"
DEV_PORT = 7880
DEV_KEY, DEV_SECRET = "devkey", "secret"  # also livekit-server --dev's
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Bound on one probe of the dev server's port: a loopback answer takes milliseconds.
PROBE_TIMEOUT_S = 3.0
# Bound on joining a room: the SDK retries a refused connection for longer than a person waits.
JOIN_TIMEOUT_S = 20.0


def dev_url(port: int = DEV_PORT) -> str:
    return f"ws://{DEV_HOST}:{port}"


@dataclass(frozen=True, slots=True)
class Credentials:
    url: str
    api_key: str
    api_secret: str

    def __repr__(self) -> str:  # never the secret, even in a debugger or a log line
        return f"Credentials(url={self.url!r}, api_key={self.api_key!r})"


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LiveKit (default: LIVEKIT_* environment, else the local dev server)")
    group.add_argument("--url", metavar="URL", help=f"LiveKit URL [env LIVEKIT_URL; default {dev_url()}]")
    group.add_argument("--api-key", metavar="KEY", help=f"[env LIVEKIT_API_KEY; default {DEV_KEY}]")
    group.add_argument("--api-secret", metavar="SECRET", help="[env LIVEKIT_API_SECRET; default the dev one]")


def credentials(args: argparse.Namespace) -> Credentials:
    """Flags over environment over the dev server's defaults (see the module docstring)."""
    url = args.url or os.environ.get("LIVEKIT_URL") or dev_url()
    key = args.api_key or os.environ.get("LIVEKIT_API_KEY") or ""
    secret = args.api_secret or os.environ.get("LIVEKIT_API_SECRET") or ""
    if urllib.parse.urlsplit(ws_url(url)).hostname in LOOPBACK_HOSTS:
        key, secret = key or DEV_KEY, secret or DEV_SECRET
    missing = [
        name for name, value in [("LIVEKIT_API_KEY", key), ("LIVEKIT_API_SECRET", secret)] if not value
    ]
    if missing:
        raise ConfigError(
            f"missing credentials for {url}: set {' and '.join(missing)} (or --api-key/--api-secret)"
        )
    return Credentials(ws_url(url), key, secret)


def join_token(creds: Credentials, room: str, identity: str, *, can_publish: bool) -> str:
    grants = api.VideoGrants(
        room_join=True, room=room, can_publish=can_publish, can_subscribe=True, can_publish_data=can_publish
    )
    return (
        api.AccessToken(creds.api_key, creds.api_secret).with_identity(identity).with_grants(grants).to_jwt()
    )


async def join(
    room: rtc.Room, creds: Credentials, room_name: str, identity: str, *, can_publish: bool
) -> None:
    """Connect `room` (its handlers registered first: the tracks already published are subscribed, and
    announced, during the connect); ServerUnavailableError (one line) when LiveKit is unreachable or
    refuses."""
    token = join_token(creds, room_name, identity, can_publish=can_publish)
    try:
        await asyncio.wait_for(room.connect(creds.url, token), JOIN_TIMEOUT_S)
    except rtc.ConnectError as exc:
        raise ServerUnavailableError(
            f"cannot join room {room_name!r} at {creds.url}: {exc.message}"
        ) from None
    except TimeoutError:
        await room.disconnect()
        raise ServerUnavailableError(
            f"cannot join room {room_name!r} at {creds.url}: no answer within {JOIN_TIMEOUT_S:.0f} s"
        ) from None


async def probe_devserver(port: int) -> bool:
    """Whether a LiveKit server that takes the dev keys answers on the dev server's port (the dev server or
    `livekit-server --dev`); False when nothing listens there. Something else on the port is a
    ConfigError saying how to point framepool at a LiveKit server instead."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(DEV_HOST, port), PROBE_TIMEOUT_S)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        async with api.LiveKitAPI(http_url(dev_url(port)), DEV_KEY, DEV_SECRET) as lk:
            await asyncio.wait_for(lk.room.list_rooms(api.ListRoomsRequest()), PROBE_TIMEOUT_S)
    except (api.TwirpError, aiohttp.ClientError, OSError, TimeoutError):
        raise ConfigError(
            f"{DEV_HOST}:{port} is taken by something that is not a LiveKit dev server taking {DEV_KEY}: "
            "point framepool at your LiveKit with LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET, "
            "or give the dev server another port with --dev-port"
        ) from None
    return True


async def create_dispatch(creds: Credentials, agent_name: str, room: str, metadata: str) -> str:
    """AgentDispatchService.CreateDispatch; the dispatch id. LiveKit creates the room if needed."""
    request = api.CreateAgentDispatchRequest(agent_name=agent_name, room=room, metadata=metadata)
    try:
        async with api.LiveKitAPI(http_url(creds.url), creds.api_key, creds.api_secret) as lk:
            dispatch = await lk.agent_dispatch.create_dispatch(request)
    except api.TwirpError as exc:
        raise ServerUnavailableError(f"LiveKit at {creds.url} refused the dispatch: {exc.message}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ServerUnavailableError(f"cannot reach LiveKit at {creds.url}: {exc}") from None
    return str(dispatch.id)
