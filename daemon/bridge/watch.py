"""Wake the bridge when a spool changes, without polling (bridge process).

Linux inotify on each spool directory (a write, a new segment): the fd is registered with the loop's
reader, every readable turn drains the queued events and sets the directory's `asyncio.Event`. Chosen over
a pipe from the supervisor because it needs no channel between the two processes: either may restart
without the other noticing. The runner still re-reads after a bounded wait (`SpoolWatch.wait`'s timeout),
so a lost wake-up can cost latency, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from pathlib import Path

IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE

_libc = ctypes.CDLL(None, use_errno=True)


class SpoolWatch:
    """One inotify fd for every spool of the bridge; `changed(directory)` is that directory's event."""

    def __init__(self) -> None:
        self._fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._events: dict[int, asyncio.Event] = {}
        asyncio.get_running_loop().add_reader(self._fd, self._drain)

    def watch(self, directory: Path) -> asyncio.Event:
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(directory), MASK)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory} failed")
        return self._events.setdefault(wd, asyncio.Event())

    def _drain(self) -> None:
        woken: set[int] = set()
        with contextlib.suppress(BlockingIOError):
            while True:
                data = os.read(self._fd, 65536)
                offset = 0
                while offset + 16 <= len(data):
                    wd = int.from_bytes(data[offset : offset + 4], "little", signed=True)
                    name_length = int.from_bytes(data[offset + 12 : offset + 16], "little")
                    woken.add(wd)
                    offset += 16 + name_length
        for wd in woken:
            if wd in self._events:
                self._events[wd].set()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)
