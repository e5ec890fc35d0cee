"""What the supervisor believes about a worker's liveness and load, and why (supervisor process).

A worker is arbitrary code (its processors), so nothing it reports may decide whether it lives or how much
work it gets. A pong counts only when it answers a ping this supervisor sent and has not seen answered
(`PingBook`): an unsolicited pong, or one with a sequence never sent, is the worker breaking the protocol.
The CPU that placement and the load figure use is read from the kernel (`/proc/<pid>/stat`), never taken
from the worker's own report, and so is its memory (`pss_of`). `HealthAction` is what one heartbeat decides
about a worker (`WorkerProcess.check_health`).
"""

from __future__ import annotations

import collections
import contextlib
import enum
import os

import psutil

# Pings a slow worker may owe at once before the oldest is forgotten (a ping interval each): a worker that
# is only slow answers an older one, which still counts, and clears the ones before it.
MAX_OUTSTANDING = 8
_TICKS = os.sysconf("SC_CLK_TCK")
# A worker warned about its memory is warned again only after dropping below 90 % of the line.
MEMORY_WARN_REARM = 0.9
# A worker answers a ping a second and reports a few events per stream: far more is a worker gone wrong.
CONTROL_RATE = 1000.0


class PingBook:
    """The pings sent to one worker incarnation that are still unanswered."""

    def __init__(self) -> None:
        self._outstanding: collections.deque[int] = collections.deque(maxlen=MAX_OUTSTANDING)

    def sent(self, seq: int) -> None:
        self._outstanding.append(seq)

    def answered(self, seq: int) -> bool:
        """True if `seq` answers an outstanding ping (it and every older one are then settled)."""
        if seq not in self._outstanding:
            return False
        while self._outstanding.popleft() != seq:
            pass
        return True


def kernel_cpu_seconds(pid: int) -> float | None:
    """CPU seconds the kernel has run `pid` for (user + system); None once it is gone.

    From /proc/<pid>/schedstat, in nanoseconds: /proc/<pid>/stat counts clock ticks (10 ms), and a worker of
    light audio streams runs for less than a tick between two readings, so its count would stay at 0. Falls
    back to stat's utime + stime where the kernel has no schedstat (CONFIG_SCHED_INFO off)."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as schedstat:
            return int(schedstat.read().split()[0]) / 1e9
    except FileNotFoundError:
        pass
    except (OSError, IndexError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3 of stat(5), utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


class HealthAction(enum.Enum):
    """What the pool's heartbeat does about one worker (`WorkerProcess.check_health`)."""

    NONE = "none"  # not serving (starting, stopping, exited): nothing to check
    PING = "ping"  # healthy: send the next ping
    WARN_MEMORY = "warn memory"  # PSS just crossed worker_memory_warn_mb: warn once, then ping
    KILL_MEMORY = "kill memory"  # PSS above worker_memory_limit_mb: kill it (the pool restarts it)
    DUMP_STACK = "dump stack"  # silent past ping_timeout: SIGUSR1, its stack goes to the log
    KILL_HUNG = "kill hung"  # still silent one heartbeat after its stack was dumped: SIGKILL
    KILL_OVER_BUDGET = "kill over budget"  # a processor call ran past its hard limit (the activity page)


def memory_action(pss: int, warned: bool, warn: int, limit: int) -> tuple[HealthAction, bool]:
    """What a worker's PSS (bytes) calls for against the warn and limit lines (bytes, 0: none), and whether
    it stands warned afterwards: warned once per crossing, re-armed only well below (MEMORY_WARN_REARM), so a
    PSS hovering at the line is quiet."""
    if limit and pss > limit:
        return HealthAction.KILL_MEMORY, warned
    if warn and pss > warn and not warned:
        return HealthAction.WARN_MEMORY, True
    return HealthAction.PING, warned and pss >= warn * MEMORY_WARN_REARM


def pss_of(pids: list[int]) -> list[int]:
    """Proportional set size of each process (0 if it is gone); blocking /proc reads, run in a thread."""
    sizes = []
    for pid in pids:
        size = 0
        with contextlib.suppress(psutil.Error):
            size = int(psutil.Process(pid).memory_full_info().pss)
        sizes.append(size)
    return sizes
