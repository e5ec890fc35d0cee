"""What a test may check in /dev/shm: the segments framepool could leak.

framepool's rings are memfds and never appear in /dev/shm, so any new segment there is a leak. Named
POSIX semaphores (`sem.*`) are excluded: framepool creates none, but multiprocessing creates them for
its queues and locks, and other programs on the machine (a benchmark's mp.Queue baseline, for one)
create and remove them at any moment.
"""

import os


def shm_segments() -> set[str]:
    return {entry for entry in os.listdir("/dev/shm") if not entry.startswith("sem.")}
