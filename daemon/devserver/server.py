"""The loopback LiveKit dev server: HTTP/websocket front door and lifecycle (runs in the dev server process).

For tests, the demo and local development only, in the spirit of `livekit-server --dev`; never a
production SFU (it re-encodes media per subscriber, see rtc.py). The HTTP port binds loopback by
default; WebRTC media uses host ICE candidates on this machine's non-loopback IPv4 interfaces, because
libwebrtc gathers no candidates on loopback (rtc.ice_host_addresses).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from types import TracebackType

from aiohttp import web

from framepool.devserver import agents, twirp
from framepool.devserver.rooms import RoomRegistry
from framepool.devserver.rtc import AiortcIncompatible, ice_host_addresses, install_workarounds
from framepool.devserver.signal import handle_rtc, handle_validate
from framepool.signals import StopSignals, run_service
from framepool.tasks import first_of

log = logging.getLogger("framepool.devserver")

DEFAULT_KEYS = {"devkey": "secret"}
# Bound on closing every connection at shutdown; the CLI's caller (a test, a terminal) waits ~2 s.
SHUTDOWN_TIMEOUT_S = 1.5


class DevServer:
    """One dev server: its rooms, its aiohttp application and its listening socket."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7880,
        keys: dict[str, str] | None = None,
        departure_timeout: float = 20.0,
        empty_timeout: float = 300.0,
        verbose: bool = False,
        signal_v1: bool = True,
    ) -> None:
        """`signal_v1=False` serves only the classic /rtc path, like a livekit-server older than /rtc/v1:
        the SDK's /rtc/v1 request then gets 404 and the SDK falls back to /rtc."""
        self.host = host
        self.port = port
        self.keys = dict(keys) if keys else dict(DEFAULT_KEYS)
        self.verbose = verbose
        self.rooms = RoomRegistry(departure_timeout=departure_timeout, empty_timeout=empty_timeout)
        self.app = web.Application()
        if signal_v1:
            self.app.router.add_get("/rtc/v1", self._rtc_v1)
            self.app.router.add_get("/rtc/v1/validate", self._validate)
        self.app.router.add_get("/rtc", self._rtc_classic)
        self.app.router.add_get("/rtc/validate", self._validate)
        twirp.setup(self.app, self)
        agents.setup(self.app, self)
        self._runner: web.AppRunner | None = None
        self._closed = False
        self._listening = False

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _rtc_v1(self, request: web.Request) -> web.StreamResponse:
        return await handle_rtc(request, self.rooms, self.keys, single_pc=True, verbose=self.verbose)

    async def _rtc_classic(self, request: web.Request) -> web.StreamResponse:
        return await handle_rtc(request, self.rooms, self.keys, single_pc=False, verbose=self.verbose)

    async def _validate(self, request: web.Request) -> web.Response:
        return await handle_validate(request, self.keys)

    async def start(self) -> None:
        """Check aiortc, bind (port 0 picks a free port, then `port`/`url` name it) and serve."""
        install_workarounds()
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self._listening = True
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info(
            "dev server listening on %s (ICE host candidates: %s)", self.url, ", ".join(ice_host_addresses())
        )

    async def aclose(self) -> None:
        """Shut down in named, bounded rungs (idempotent).

        1. disconnect participants: new joins get 503; every room closes with SERVER_SHUTDOWN, all
           clients told concurrently, each close handshake bounded (signal.WS_CLOSE_TIMEOUT_S);
        2. stop serving: stop listening, give the signal sessions and /agent connections
           SHUTDOWN_TIMEOUT_S to close their peer connections (concurrently, one task each), then
           cancel whatever is left.
        """
        if self._closed:
            return
        self._closed = True
        # A server that never listened (bind failed) has nothing to report.
        report = log.info if self._listening else log.debug
        started = time.monotonic()
        report("shutdown: disconnecting participants")
        await self.rooms.aclose()
        if self._runner is not None:
            report("shutdown: stop serving, closing connections (at most %.1f s)", SHUTDOWN_TIMEOUT_S)
            await self._runner.cleanup()
        report("shutdown: done in %.2f s", time.monotonic() - started)

    async def __aenter__(self) -> DevServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


async def _serve(server: DevServer) -> None:
    """Serve until SIGINT/SIGTERM, then shut down; a second signal abandons the orderly shutdown.

    The handlers stay installed for the rest of the process (`framepool.signals`): a signal arriving after
    the shutdown finished is absorbed instead of killing the process with a misleading status.
    """
    signals = StopSignals()
    signals.install()
    try:
        await server.start()
        key, secret = next(iter(server.keys.items()))
        print(
            f"framepool dev server (loopback, for development only)\n"
            f"  url:        {server.url}\n  api key:    {key}\n  api secret: {secret}",
            flush=True,
        )
        await signals.first.wait()
        log.info("stopping dev server")
        closing = asyncio.ensure_future(server.aclose())
        if await first_of({"closed": closing, "second signal": signals.second.wait()}) == "closed":
            closing.result()
        else:
            log.warning("second signal: exiting without waiting for connections to close")
            closing.cancel()
    finally:
        await server.aclose()


def run_devserver(
    host: str = "127.0.0.1",
    port: int = 7880,
    keys: dict[str, str] | None = None,
    verbose: bool = False,
    departure_timeout: float = 20.0,
) -> int:
    """CLI entry: serve until SIGINT/SIGTERM; 0 on a clean stop, 2 when it cannot start."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = DevServer(host=host, port=port, keys=keys, departure_timeout=departure_timeout, verbose=verbose)
    try:
        run_service(_serve(server))
    except AiortcIncompatible as exc:
        print(f"framepool devserver: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        print(
            f"framepool devserver: cannot listen on {host}:{port}: {exc.strerror or exc}",
            file=sys.stderr,
            flush=True,
        )
        return 2
    return 0
