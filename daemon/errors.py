"""framepool's exception types (both processes).

Every error a user can cause or meet in operation is a `FramepoolError` carrying the exit status the
CLI uses for it, so the command line prints one line and exits instead of showing a traceback.
"""

from __future__ import annotations

# Exit statuses are a contract with whatever supervises the daemon (systemd, Docker, tests).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2  # bad settings or command-line usage, like argparse
EXIT_UNAVAILABLE = 3  # LiveKit server unreachable or credentials refused
EXIT_WORKER_CRASH_LOOP = 4  # processor workers kept dying at boot: halted instead of respawning forever
EXIT_INTERRUPTED = 130


class FramepoolError(Exception):
    """An error with a one-line message meant for the operator."""

    exit_code = EXIT_FAILURE


class ConfigError(FramepoolError):
    """A setting or command-line value is invalid; the message names the key, the value and what was expected."""

    exit_code = EXIT_CONFIG


class ChannelError(FramepoolError):
    """Any failure of the supervisor-worker control channel (closed, truncated, undecodable, oversize)."""


class PoolError(FramepoolError):
    """The worker pool could not start or lost a worker in a way it cannot recover from."""


class CrashLoopError(PoolError):
    """Workers died repeatedly before becoming ready; the pool halted."""

    exit_code = EXIT_WORKER_CRASH_LOOP


class ProcessorError(FramepoolError):
    """A processor name, class or parameter is invalid."""

    exit_code = EXIT_CONFIG


class InputError(FramepoolError):
    """An offline input file cannot be opened or decoded."""


class ServerUnavailableError(FramepoolError):
    """The LiveKit server is unreachable or refused the credentials."""

    exit_code = EXIT_UNAVAILABLE
