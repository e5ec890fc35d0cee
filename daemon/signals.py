"""SIGTERM and SIGINT, handled in one place (supervisor process; the dev server's process uses it too).

A handler only sets an event: `first` at the first stop signal, `second` at every later one. What a
command does about them (drain, close connections, take the quick path) is ordinary code on the loop,
where it can await, keep deadlines and log; `framepool.service.Supervisor` and the dev server read the
same two events.

Late signals are absorbed. Signals keep arriving while a process stops (a user hammering Ctrl-C, a
service manager repeating SIGTERM), and one that lands after the orderly stop must not kill the process
with a misleading status (-2 or -15). So the handlers stay installed until `restore()` (a command's own
process never restores them), they do nothing once the loop has closed, and `run_service` sets SIG_IGN
when the command's coroutine is over, before interpreter shutdown could put the defaults back.

Rejected, and why:
- `loop.add_signal_handler`: asyncio and uvloop restore the default disposition when such a handler is
  removed or the loop closes, which is exactly the window where late signals killed the process.
- `asyncio.Runner`'s own SIGINT handling (KeyboardInterrupt raised into the main task): it interrupts
  whatever rung is running, mid-await, and covers SIGINT only, not a service manager's SIGTERM.
- a queue of signal numbers (gunicorn's SIG_QUEUE): SIGTERM and SIGINT mean the same here, and only
  two states matter, asked to stop and asked again.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

from framepool import loop as framepool_loop

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """SIGTERM/SIGINT as two events: `first` (stop in order) and `second` (the quick path)."""

    def __init__(self) -> None:
        self.first = asyncio.Event()
        self.second = asyncio.Event()
        self.received = 0  # stop requests so far, signals or `request()` calls
        self.first_signal: int | None = None  # the number of the first stop signal received, if any
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        """Take over SIGTERM/SIGINT for the running loop (from the main thread, inside the loop)."""
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        """Give the signals back to whatever handled them before `install` (embedders, tests)."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """`install` for the duration of a block, for a caller that shares its process (a test)."""
        self.install()
        try:
            yield self
        finally:
            self.restore()

    def request(self) -> None:
        """What a stop signal does, for a caller that stops without one."""
        self.received += 1
        (self.second if self.first.is_set() else self.first).set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if self.first_signal is None:
            self.first_signal = signum
        try:
            loop.call_soon_threadsafe(self.request)
        except RuntimeError:  # the loop closed between the check and the call: the command is ending anyway
            pass


def run_service(main: Coroutine[Any, Any, T]) -> T:
    """`framepool_loop.run` for a command that stops on StopSignals: once `main` is over, both are ignored.

    Without this, interpreter shutdown puts the default dispositions back (Python does so for every
    signal with a Python-level handler), and a signal landing during those last milliseconds killed a
    process that had already stopped in order.
    """
    try:
        return framepool_loop.run(main)
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
