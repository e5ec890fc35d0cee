"""Running an AgentServer as a daemon: signals, drain, the shutdown ladder and the exit status (supervisor process).

The ladder, each rung logged once:
1. first SIGTERM/SIGINT: drain — every connection reports FULL, nothing new is accepted, running jobs get
   up to `drain_timeout` to finish on their own;
2. then (or at once on a second signal, the quick path) every remaining job runs its shutdown ladder
   (all of its rungs within `shutdown_timeout`), the dispatchers disconnect, the worker pool stops.
Exit status: 0 after a clean drain, 1 when jobs had to be cut short, 130 on the quick path, the error's own
code when LiveKit stayed unreachable (3) or the pool halted (4).

Signal handlers only set events (`framepool.loop.StopSignals`): the ladder itself runs as ordinary code on
the loop, where it can await and log. When `serve` owns the handlers (the `framepool start` process) they
stay installed to the end, so a late signal during exit is absorbed; a caller that embeds this passes its
own `SignalEvents` and removes them when it is done.
"""

from __future__ import annotations

import asyncio
import logging

from framepool.agent.server import AgentServer
from framepool.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK
from framepool.loop import LoopLagMonitor, StopSignals
from framepool.sdnotify import Notifier

log = logging.getLogger("framepool.agent.drain")


class SignalEvents:
    """Counts SIGTERM/SIGINT: `first` and `second` are set by the handlers and nothing else happens there."""

    def __init__(self) -> None:
        self.first = asyncio.Event()
        self.second = asyncio.Event()
        self._handlers = StopSignals(self._on_signal)

    def _on_signal(self) -> None:
        (self.second if self.first.is_set() else self.first).set()

    def install(self) -> None:
        self._handlers.install()

    def remove(self) -> None:
        self._handlers.restore()


async def serve(server: AgentServer, signals: SignalEvents | None = None) -> int:
    """Run `server` until a signal, then drain; returns the exit status (raises FramepoolError on failures)."""
    own = signals is None
    signals = signals or SignalEvents()
    if own:
        signals.install()
    notifier = Notifier()
    ready = asyncio.create_task(_notify_ready(server, notifier))
    lag = LoopLagMonitor()
    lag.start()
    try:
        running = asyncio.create_task(server.run())
        first = asyncio.create_task(signals.first.wait())
        await asyncio.wait([running, first], return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            first.cancel()
            running.result()  # raises the server's error
            return EXIT_OK
        notifier.stopping(f"draining {len(server.jobs)} job(s)")
        return await _drain_then_stop(server, signals, running)
    finally:
        lag.stop()
        ready.cancel()


async def _notify_ready(server: AgentServer, notifier: Notifier) -> None:
    """systemd (Type=notify) counts the daemon as started once the pool is up and every agent is registered."""
    await server.registered.wait()
    notifier.ready(f"{len(server.dispatchers)} agent(s) registered")


async def _drain_then_stop(server: AgentServer, signals: SignalEvents, running: asyncio.Task[None]) -> int:
    log.info("shutdown requested: draining (a second signal stops at once)")
    drain = asyncio.create_task(server.drain())
    second = asyncio.create_task(signals.second.wait())
    await asyncio.wait([drain, second, running], return_when=asyncio.FIRST_COMPLETED)
    quick = second.done() and not drain.done()
    if quick:
        log.warning("second signal: ending %d job(s) now", len(server.jobs))
    clean = drain.done() and not drain.cancelled() and drain.result()
    drain.cancel()
    second.cancel()
    server.stop()
    await running
    if quick:
        return EXIT_INTERRUPTED
    return EXIT_OK if clean else EXIT_FAILURE
