"""What a test may check for leaked shared memory: framepool's memfds held by this process, and /dev/shm.

framepool's rings and doorbells are memfds (`memfd:framepool-ring`, `memfd:framepool-doorbell`, ...): they
never appear in /dev/shm, and one leaks by staying open, so the check counts the ones this process holds
in /proc/self/fd. /dev/shm is checked too, since any segment appearing there would be a leak of another
kind. Named POSIX semaphores (`sem.*`) are excluded: framepool creates none, but multiprocessing creates
them for its queues and locks, and other programs on the machine create and remove them at any moment.
So are PostgreSQL's dynamic shared memory segments (`PostgreSQL.*`): any PostgreSQL server on the machine
(a sink test's, a benchmark's, the machine's own) creates and removes them as its queries run.
"""

import collections
import os


def framepool_memfds(pid: int | str = "self") -> collections.Counter[str]:
    """How many framepool memfds of each kind `pid` holds open."""
    held: collections.Counter[str] = collections.Counter()
    for entry in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("/memfd:framepool-"):
            held[target.split(" ")[0].removeprefix("/")] += 1
    return held


def shm_segments() -> set[str]:
    """Leak-checkable state: /dev/shm segments and one entry per framepool memfd this process holds."""
    segments = {entry for entry in os.listdir("/dev/shm") if not entry.startswith(("sem.", "PostgreSQL."))}
    for kind, count in framepool_memfds().items():
        segments.update(f"{kind} #{n}" for n in range(1, count + 1))
    return segments
