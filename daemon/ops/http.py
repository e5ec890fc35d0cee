"""Health and status over HTTP on the supervisor's event loop (supervisor process).

aiohttp serves, on `http_host`:`http_port` (8081 by default, as LiveKit's agent servers; 0 disables):
- `/livez` and `/`: 200 while the daemon can do its job, else 503 (`framepool.ops.health.liveness`);
- `/readyz`: 200 while it should be sent work, else 503 (`readiness`);
- `/status`: always 200, the JSON document of `framepool.ops.status`;
- `/metrics`: always 200, Prometheus text (`framepool.ops.metrics`);
- `/dashboard`: the status page (`framepool.ops.dashboard`), drawn in the browser from /status.
A 503's body says why in one line; the access log is off (a probe every few seconds would drown the log).

Why on the supervisor's loop and not in a thread or a worker: the loop is what has to be alive, so a probe
answered on it proves it turns; a thread would answer while the loop is stuck. Handlers only read state
(microseconds), never await, so they cannot hold a stop up. The server starts in `Supervisor.startup`
before the workers, so /livez and /readyz answer during a long start-up, and stops last, after the stop
ladder, so probes see the whole drain. A port that cannot be bound is a ConfigError: one line, exit 2.

Readiness changes are logged once each by `ReadinessLog`, observed at every /readyz and by a watcher every
`WATCH_INTERVAL`: readiness depends on every connection's registration, every worker's state and the phase,
and one cheap timer bounds the log's delay without hooks in each of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from aiohttp import web

from framepool.errors import ConfigError
from framepool.ops.dashboard import serve_dashboard
from framepool.ops.health import ReadinessLog, Verdict, liveness, readiness
from framepool.ops.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from framepool.ops.metrics import Metrics
from framepool.ops.status import StatusSources, build_status, encode

if TYPE_CHECKING:
    from framepool.service import Supervisor

log = logging.getLogger("framepool.ops")

WATCH_INTERVAL = 1.0  # seconds between the readiness watcher's looks
# A request still running when the server stops (handlers never await: in practice none).
CLOSE_TIMEOUT = 0.5
NO_STORE = {"Cache-Control": "no-store"}


class Endpoints:
    """The request handlers; each reads the Supervisor's state and answers at once."""

    def __init__(self, supervisor: Supervisor, sources: StatusSources, readiness_log: ReadinessLog) -> None:
        self.supervisor = supervisor
        self.sources = sources
        self.readiness_log = readiness_log

    async def livez(self, request: web.Request) -> web.Response:
        return _answer(liveness(self.supervisor), "live")

    async def readyz(self, request: web.Request) -> web.Response:
        verdict = readiness(self.supervisor)
        self.readiness_log.observe(verdict)
        return _answer(verdict, "ready")

    async def status(self, request: web.Request) -> web.Response:
        body = encode(build_status(self.supervisor, self.sources))
        return web.Response(body=body, content_type="application/json", headers=NO_STORE)


def _answer(verdict: Verdict, word: str) -> web.Response:
    if verdict.ok:
        return web.Response(text=f"{word}\n", headers=NO_STORE)
    return web.Response(status=503, text=f"not {word}: {verdict.reason}\n", headers=NO_STORE)


def build_app(
    supervisor: Supervisor, sources: StatusSources, readiness_log: ReadinessLog, metrics: Metrics
) -> web.Application:
    """The application and its routes."""
    endpoints = Endpoints(supervisor, sources, readiness_log)
    app = web.Application()
    app.router.add_get("/", endpoints.livez)
    app.router.add_get("/livez", endpoints.livez)
    app.router.add_get("/readyz", endpoints.readyz)
    app.router.add_get("/status", endpoints.status)

    async def serve_metrics(request: web.Request) -> web.Response:
        # The content type as a header: aiohttp's content_type= would drop its "version=0.0.4" parameter.
        return web.Response(body=metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/dashboard", serve_dashboard)
    return app


class HttpServer:
    """The Supervisor's HTTP endpoints: `start` (nothing when http_port = 0), `aclose`."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.sources = StatusSources(supervisor.server)  # before any job: ended jobs' counters are kept
        self.readiness_log = ReadinessLog()
        self.metrics = Metrics(supervisor)  # before any job too: it observes every job's end
        self._runner: web.AppRunner | None = None
        self._watch: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Listen on http_host:http_port; ConfigError (one line) when the address cannot be bound."""
        settings = self.supervisor.settings
        host, port = settings.http_host, settings.http_port
        if not port:
            return
        app = build_app(self.supervisor, self.sources, self.readiness_log, self.metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=CLOSE_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ConfigError(
                f"cannot serve health and status on {host}:{port}: {why}; set http_port "
                "(FRAMEPOOL_HTTP_PORT) to a free port, or 0 to disable"
            ) from None
        self._runner = runner
        log.info(
            "health and status on http://%s:%d (/livez, /readyz, /status, /metrics, /dashboard)", host, port
        )
        self._look(asyncio.get_running_loop())

    def _look(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self.readiness_log.observe(readiness(self.supervisor))
        finally:
            self._watch = loop.call_later(WATCH_INTERVAL, self._look, loop)

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
