"""StopSignals with real signals raised in this process: first, second, late ones, handlers given back."""

from __future__ import annotations

import asyncio
import signal

from framepool import loop as framepool_loop
from framepool.signals import StopSignals


async def test_first_then_second_signal_set_their_events_and_nothing_else() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with StopSignals().installed() as signals:
        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(signals.first.wait(), 5.0)  # bounds failure only: the handler calls back soon
        assert not signals.second.is_set()
        signal.raise_signal(signal.SIGINT)  # either signal counts: a Ctrl-C after a SIGTERM is the second
        await asyncio.wait_for(signals.second.wait(), 5.0)
        assert signals.received == 2
    assert signal.getsignal(signal.SIGTERM) is previous


async def test_request_does_what_a_signal_does() -> None:
    signals = StopSignals()  # not installed: an embedder stops without a signal
    signals.request()
    assert signals.first.is_set() and not signals.second.is_set()
    signals.request()
    assert signals.second.is_set()


def test_a_signal_after_the_loop_closed_is_absorbed() -> None:
    signals = StopSignals()

    async def install() -> None:
        signals.install()

    framepool_loop.run(install())  # the loop is closed when this returns; the handlers are still installed
    try:
        signal.raise_signal(signal.SIGTERM)  # would end this test process with -15 if it were not absorbed
        assert signals.received == 0
    finally:
        signals.restore()
