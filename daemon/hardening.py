"""The supervisor process makes itself harder to read from its own workers (supervisor process).

`make_undumpable` sets PR_SET_DUMPABLE to 0: the kernel then refuses other processes of the same user
(every worker, whatever its processors do) ptrace access to the supervisor and makes /proc/<pid>/mem,
environ, fd/ and maps readable by root only, so a processor cannot read the LiveKit secret out of the
supervisor's environment or memory, or reopen another room's rings through /proc/<supervisor>/fd. The
setting is cleared on execve, so the workers (started by exec) stay dumpable and debuggable. The cost:
no core dump of the supervisor unless the operator raises it (`prctl` or the systemd unit).

Called by the commands that run a supervisor (`framepool start`, `dev`, `connect`, `process`), not on
import: tests and programs that embed the pool keep their own process as it is.
"""

from __future__ import annotations

import ctypes
import logging

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3

log = logging.getLogger("framepool.hardening")


def make_undumpable() -> bool:
    """Clear this process's dumpable flag; False (logged) if the kernel refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("could not make the supervisor non-dumpable: errno %d", ctypes.get_errno())
        return False
    return True


def dumpable() -> bool:
    return bool(ctypes.CDLL(None).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
