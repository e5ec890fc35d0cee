"""The SDK's callback threads keep one Python thread state each instead of building one per event."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from livekit.rtc._ffi_client import FfiClient

from framepool.agent.ffi_threads import keep_callback_thread_states
from framepool.devserver.server import DevServer
from tests.support.sdk import joined

pytestmark = pytest.mark.integration


async def test_callback_threads_keep_their_thread_state_between_events(
    devserver: DevServer, room_name: str
) -> None:
    assert keep_callback_thread_states()
    assert keep_callback_thread_states()  # idempotent: one wrapper, not two
    fanout: Any = FfiClient.instance.queue
    inner = fanout.put
    local = threading.local()  # its contents live exactly as long as the thread state
    states: Counter[str] = Counter()
    threads: set[int] = set()

    def probe(event: Any) -> None:
        threads.add(threading.get_ident())
        states["kept" if getattr(local, "seen", False) else "new"] += 1
        local.seen = True
        inner(event)

    fanout.put = probe
    try:
        async with joined(devserver, "agent", room_name) as room:
            for _ in range(30):
                await room.local_participant.publish_data(b"x", topic="t")
    finally:
        fanout.put = inner
    assert states["kept"] >= 30, states
    assert states["new"] <= len(threads), (states, len(threads))
