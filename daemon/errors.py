"""framepool's exception types and the daemon's exit statuses (both processes).

Every error a user can cause or meet in operation is a `FramepoolError` carrying the exit status the
CLI uses for it, so the command line prints one line and exits instead of showing a traceback.

`ExitStatus` is the `framepool` command's contract with whatever supervises it (systemd's
`RestartPreventExitStatus`, Docker, scripts, tests). A worker's own exit codes are a different contract,
between the worker and the pool: `framepool.ipc.lifecycle.WorkerExit`, whose values never coincide with
these (0 aside), so no number means two things. The README's Operations section shows both tables.
"""

from __future__ import annotations

import enum
import signal


class ExitStatus(enum.IntEnum):
    """How the `framepool` command ends."""

    OK = 0  # clean: drained (or nothing to drain), every job ended in order
    FAILURE = 1  # jobs had to be cut short (drain timed out), a job failed (connect), or another error
    CONFIG = 2  # bad settings or command-line usage, like argparse
    UNAVAILABLE = 3  # LiveKit server unreachable or credentials refused
    POOL_HALTED = 4  # workers cannot start (a crash loop at boot, a failed prewarm hook): the pool halted
    INTERRUPTED = 130  # a second stop signal took the quick path, or SIGINT stopped `process` (128 + SIGINT)
    TERMINATED = 143  # SIGTERM stopped `process` in order, its summary so far printed (128 + SIGTERM)

    @classmethod
    def of_signal(cls, signum: int) -> ExitStatus:
        """The shell's 128 + signal for a run a stop signal cut short (`framepool process`)."""
        return cls.TERMINATED if signum == signal.SIGTERM else cls.INTERRUPTED


class FramepoolError(Exception):
    """An error with a one-line message meant for the operator."""

    exit_code: ExitStatus = ExitStatus.FAILURE


class ConfigError(FramepoolError):
    """A setting or command-line value is invalid; the message names the key, the value and what was
    expected."""

    exit_code = ExitStatus.CONFIG


class ChannelError(FramepoolError):
    """Any failure of the supervisor-worker control channel (closed, truncated, undecodable, oversize)."""


class PoolError(FramepoolError):
    """The worker pool could not start or lost a worker in a way it cannot recover from."""


class PoolHaltedError(PoolError):
    """Workers cannot start, and another incarnation would fail the same way: the pool halted."""

    exit_code = ExitStatus.POOL_HALTED


class CrashLoopError(PoolHaltedError):
    """Workers died repeatedly before becoming ready; the pool halted instead of respawning forever."""


class ProcessorError(FramepoolError):
    """A processor name, class or parameter is invalid."""

    exit_code = ExitStatus.CONFIG


class InputError(FramepoolError):
    """An offline input file cannot be opened or decoded."""


class ServerUnavailableError(FramepoolError):
    """The LiveKit server is unreachable or refused the credentials."""

    exit_code = ExitStatus.UNAVAILABLE
