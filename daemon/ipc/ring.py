"""The shared-memory frame ring between the supervisor and the processor workers (both processes).

`framepool.ipc.ring` re-exports the C extension `framepool._ring`; `framepool.ipc.pyring` is the pure-Python
reference with the same API and the same memory layout (the tests run both and cross them).
`implementation("c" | "python")` returns either module.

Design. One ring per stream and direction, single producer, single consumer. A ring is a memfd (created by
the supervisor, passed to the worker with `socket.send_fds`): a control page holding head and tail on their
own cache lines plus shared counters, an array of 64-byte frame descriptors (sequence, timestamp, kind,
format, flags, three kind-specific words a/b/c, length, payload slot) and page-aligned, pre-faulted payload
slots. The ring moves descriptors without interpreting them: `framepool.ipc.slots` is the one place that
says what they mean (an audio frame's rate, a result's stream and topic length). The producer copies a
frame into a free slot once and publishes it with a release store of `head`; the consumer gets a zero-copy
memoryview of the slot (valid until `release()`) and frees it with a release store of `tail`. When the
consumer has released everything (it keeps up, the normal state of a realtime stream), the producer
rewrites the slot it wrote last, so one slot's memory stays in cache instead of cycling through all of them
(the saving is measured in benchmarks/README.md, Ring section, paced mode).
Policies: BLOCK (offline sources: a full ring refuses the write and the producer waits for space; nothing is
lost), DROP_NEWEST (realtime audio: the incoming frame is dropped, counted, and the next frame written
carries FLAG_GAP), LATEST (realtime video: drop and count the incoming frame; the consumer jumps to the
newest frame, counting the ones it skips).

Wake-ups go through a `Doorbell`: an eventfd plus a 'sleeping' word in a shared page. The producer writes
the eventfd only when the consumer has announced that it sleeps, so a busy consumer costs the producer two
atomic operations per frame and no syscall; Dekker's protocol (store own flag, full fence, load the other
side's word) on both sides guarantees that no wake-up is lost. A producer waiting for space re-checks with
`write()` after `prepare_sleep()` (a refused write re-arms the flag that makes `release()` ring), never with
`free_slots()`: a release that began before the stall can consume the flag, and both sides then sleep.

Alternatives rejected:
- multiprocessing.Queue: pickles and copies every frame through a pipe and a feeder thread, 30-45x the
  CPU of a ring for a 1080p frame (see benchmarks/README.md, Ring section).
- Named POSIX shared memory (shm_open, multiprocessing.shared_memory): names outlive a process killed with
  SIGKILL and leak in /dev/shm; a memfd dies with the last fd and mapping, and the resource tracker is not
  needed.
- Busy-spinning consumers: these machines have two cores; a spinning worker steals the supervisor's CPU.
- futex instead of eventfd: a futex wait cannot be watched by the supervisor's asyncio loop and cannot wait
  on several rings at once; an eventfd can be given to `loop.add_reader` and to `poll()`, and the doorbell's
  sleeping flag already removes the syscall from the common path, which was the futex's advantage.
"""

from __future__ import annotations

from types import ModuleType

from framepool._ring import (
    FLAG_EOS,
    FLAG_GAP,
    POLICY_BLOCK,
    POLICY_DROP_NEWEST,
    POLICY_LATEST,
    Doorbell,
    FrameHeader,
    FrameRing,
    RingError,
)

__all__ = [
    "FLAG_EOS",
    "FLAG_GAP",
    "POLICY_BLOCK",
    "POLICY_DROP_NEWEST",
    "POLICY_LATEST",
    "Doorbell",
    "FrameHeader",
    "FrameRing",
    "RingError",
    "implementation",
]


def implementation(name: str) -> ModuleType:
    """The ring module called `name`: "c" (the extension, for production) or "python" (the reference)."""
    if name == "c":
        from framepool import _ring

        return _ring
    if name == "python":
        from framepool.ipc import pyring

        return pyring
    raise ValueError(f'unknown ring implementation {name!r}: expected "c" or "python"')
