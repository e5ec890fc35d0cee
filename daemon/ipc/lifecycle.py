"""How a worker process starts and how it ends: its entry point and its exit codes (both processes).

The supervisor starts a worker with `worker_entry` as the multiprocessing target; the worker runtime
(`framepool.worker.main`) is imported there, inside the child, so no supervisor module imports the worker
package (a unit test holds both sides to that line).

`WorkerExit` is the contract between a worker and the pool, the way gunicorn's WORKER_BOOT_ERROR is:
the worker exits with exactly one of these codes, from one place (`framepool.worker.main.main`), and the
pool decides on the code, never on a message. The values sit in a block of their own, above the
`framepool` command's `ExitStatus` values and below the shell's 128+signal, so no number means two
things; only 0 is shared, and it means a clean end in both.

`WorkerLaunch` is what a worker must know before it reads its first control message: the environment it
runs with (allow-listed by the supervisor, `framepool.pool.spawn`), how it logs (set up first, so even a
failing sandbox set-up is a proper log line) and whether it sandboxes itself (`framepool.worker.sandbox`)
before any processor code is imported. It travels as the multiprocessing target's argument, never through
the environment.
"""

from __future__ import annotations

import dataclasses
import enum
import socket


class WorkerExit(enum.IntEnum):
    """A worker's exit code, and what the pool does about it."""

    CLEAN = 0  # Shutdown answered with ShutdownAck and everything closed
    RUNTIME_ERROR = 64  # an unexpected exception in the worker runtime (a bug; logged): restarted
    BAD_START = 65  # the start message or its fds were unusable (a framepool bug): the pool halts
    PREWARM_FAILED = 66  # the prewarm hook raised or cannot be imported (WorkerFailed says why): halts
    ORPHANED = 67  # the supervisor died before the parent-death signal was armed: nobody is left to care
    CHANNEL_LOST = 68  # the control channel broke (the supervisor is gone or misbehaved): restarted
    SANDBOX_FAILED = 69  # sandbox = true but it could not be set up (WorkerFailed says why): the pool halts
    # Killed by the supervisor (ping timeout after a SIGUSR1 stack dump, memory limit, the last
    # shutdown rung) is not a code but SIGKILL: multiprocessing reports it as -9.


# Exits after which a new incarnation would fail the same way: the pool halts instead of respawning.
FATAL_AT_BOOT = frozenset({WorkerExit.BAD_START, WorkerExit.PREWARM_FAILED, WorkerExit.SANDBOX_FAILED})


@dataclasses.dataclass(frozen=True)
class WorkerLaunch:
    """What a worker applies to itself first, before its start message (pickled by multiprocessing)."""

    env: dict[str, str]  # the worker's whole environment (os.environ is replaced by it)
    sandbox: bool = False
    sandbox_user: str = "nobody"
    log_level: str = "info"
    log_format: str = "auto"


def describe_exit(code: int | None) -> str:
    """`exit code 66 (PREWARM_FAILED)`, `signal 9`: an exit as the pool's log lines show it."""
    if code is None:
        return "an unknown status"
    if code < 0:
        return f"signal {-code}"
    try:
        return f"exit code {code} ({WorkerExit(code).name})"
    except ValueError:
        return f"exit code {code}"


def worker_entry(sock: socket.socket, expected_parent: int, launch: WorkerLaunch) -> None:
    """The multiprocessing target (runs in the new worker process): the worker runtime, imported here."""
    from framepool.worker.main import main

    main(sock, expected_parent, launch)
