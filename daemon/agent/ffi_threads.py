"""The SDK's callback threads keep their Python thread state between events (supervisor process).

The livekit SDK delivers every FFI event (an audio frame, a `publish_data` completion, a room event)
through a ctypes callback that its Rust runtime calls on its own threads. ctypes wraps each call in
PyGILState_Ensure/Release, and on a thread Python did not create that pair builds a fresh thread state
and tears it down again, every time: CPython 3.11 maps a new frame stack for it (mmap) and unmaps it
(munmap, a TLB shoot-down that interrupts every core the process runs on) per event. One room per
process, as LiveKit Agents runs, sees a few of those a second; a supervisor holding K audio jobs sees
about 20 per job and second (10 frames, 10 result completions). Profiled at 12 jobs, the mmap/munmap
pairs and the page faults they cause were 6 % of the supervisor's CPU.

`keep_callback_thread_states()` wraps the SDK's event fan-out (`FfiClient.instance.queue.put`, the one
place its callback enters Python) so the first event on each callback thread takes one extra
PyGILState_Ensure that is never released: the thread state, its frame stack and its thread-locals then
live as long as the thread. Rust's runtime keeps a handful of threads for the life of the process, so
this holds a handful of thread states, not one per event. A thread that exits leaves its thread state
behind (about 20 kB, freed at interpreter exit), so at most MAX_PINNED threads are pinned: should the SDK
ever call back from short-lived threads, the ones past the cap cost what they did before instead of memory.

Rejected: replacing the SDK's ctypes callback (it is registered once, inside the SDK, at start);
patching CPython's allocator (the churn is the thread state itself, not the allocation). If the SDK's
shape differs, nothing is wrapped and events cost what they did before.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any

from livekit.rtc._ffi_client import FfiClient

log = logging.getLogger("framepool.agent.ffi_threads")

MAX_PINNED = 32
_installed = False


def keep_callback_thread_states() -> bool:
    """Make every SDK callback thread keep its Python thread state; idempotent. False when not applied."""
    global _installed
    if _installed:
        return True
    fanout: Any = FfiClient.instance.queue
    put: Callable[[Any], None] | None = getattr(fanout, "put", None)
    if put is None:
        log.debug("SDK callback threads not pinned: its event queue has no put()")
        return False
    ensure = ctypes.pythonapi.PyGILState_Ensure
    pinned: set[int] = set()

    def put_on_pinned_thread(event: Any) -> None:
        ident = threading.get_ident()
        if ident not in pinned and len(pinned) < MAX_PINNED:
            pinned.add(ident)
            ensure()  # held for the thread's life: its thread state outlives this callback
            log.debug("SDK callback thread %d keeps its thread state (%d so far)", ident, len(pinned))
        put(event)

    fanout.put = put_on_pinned_thread
    _installed = True
    return True
