"""The supervisor's event loop: uvloop through a loop factory, and a monitor of the loop's own lag (supervisor).

The supervisor must never block: every room connection, every ring hand-off and every control message
shares this one loop. uvloop roughly halves the loop's own overhead per callback; it is chosen through
`asyncio.Runner(loop_factory=...)` rather than a global event-loop policy, so libraries and tests that
create their own loops are unaffected. `FRAMEPOOL_LOOP=asyncio` falls back to the standard loop (for
debugging with asyncio's debug mode, which uvloop lacks).

The lag monitor is a timer that asks to run every `interval` and measures how late it actually runs:
that delay is what every frame and every control message waits behind. It keeps the worst lag of the
last few seconds for status reports and warns (at most once per `warn_every`) when it exceeds a limit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def loop_factory() -> Any:
    """uvloop's loop factory, or None (asyncio's default) when FRAMEPOOL_LOOP=asyncio."""
    if os.environ.get("FRAMEPOOL_LOOP", "uvloop") == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the supervisor's main coroutine on uvloop (the way every CLI command starts its loop)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def run_service(main: Coroutine[Any, Any, T]) -> T:
    """`run` for a command that stops on SIGTERM/SIGINT (`StopSignals`): once `main` is over, both are ignored.

    Without this, interpreter shutdown puts the default dispositions back (Python does so for every
    signal with a Python-level handler), and a signal landing during those last milliseconds killed
    a process that had already stopped in order, with a misleading status (-2 or -15).
    """
    try:
        return run(main)
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


class LoopLagMonitor:
    """Measures how late a periodic timer fires on the running loop."""

    def __init__(
        self, interval: float = 0.25, warn_above: float = 0.1, warn_every: float = 30.0, window: float = 5.0
    ) -> None:
        self.interval = interval
        self.warn_above = warn_above
        self.warn_every = warn_every
        self._window = max(1, round(window / interval))
        self._recent: list[float] = []
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0
        self._last_warning = -float("inf")
        self.worst = 0.0  # worst lag ever seen, seconds

    @property
    def lag(self) -> float:
        """The worst lag of the last few seconds, in seconds."""
        return max(self._recent, default=0.0)

    def start(self) -> None:
        self._schedule(asyncio.get_running_loop())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._expected = time.monotonic() + self.interval
        self._handle = loop.call_later(self.interval, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        lag = max(0.0, now - self._expected)
        self._recent.append(lag)
        del self._recent[: -self._window]
        self.worst = max(self.worst, lag)
        if lag > self.warn_above and now - self._last_warning >= self.warn_every:
            self._last_warning = now
            log.warning("supervisor event loop ran %.0f ms late: something blocked it", lag * 1000)
        self._schedule(loop)


class StopSignals:
    """SIGTERM/SIGINT for a long-running command: each signal calls `on_signal` on the loop, nothing else.

    Python-level handlers (`signal.signal`) rather than `loop.add_signal_handler`: asyncio and uvloop put
    the default dispositions back when such a handler is removed or the loop closes, so a second Ctrl-C
    or SIGTERM landing in the last moments of an orderly shutdown killed the process (exit -2 or -15)
    instead of being absorbed. These handlers stay until `restore()`, and once the loop has closed they
    ignore the signal. A command's own process never restores them; an embedder (a test) does.
    """

    def __init__(self, on_signal: Callable[[], None]) -> None:
        self._on_signal = on_signal
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        """Take over SIGTERM/SIGINT for the running loop (call from the main thread, inside the loop)."""
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        """Give the signals back to whatever handled them before `install`."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._on_signal)
        except RuntimeError:  # the loop closed between the check and the call: the command is already ending
            pass
