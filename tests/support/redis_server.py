"""A real Redis on loopback for the Redis Streams sink tests (test process starts it as its child).

One server per test module (`redis_server` fixture): a temp directory, a free port, no RDB snapshots and an
append-only file fsynced on every write (`appendfsync always`), so what the server acknowledged survives
`kill()` (SIGKILL) and `restart()` on the same port and directory: that is what lets a test demand that the
stream holds every acknowledged event after a crash. Installed by `make servers` (Debian's redis-server).
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import timeouts
from tests.support.servers import LoggedServer, free_port, redis_server_binary

READY = "Ready to accept connections"


class RedisServer:
    """One redis-server child: `url`, `kill()`, `start()` (again after a kill, same data), `stop()`."""

    def __init__(self, directory: Path) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server not found: run `make servers` (installs Debian's redis-server)")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: LoggedServer | None = None

    def start(self) -> None:
        """Start the server and return once it accepts connections (after loading its append-only file)."""
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "notice",
        ]  # fmt: skip
        self.server = LoggedServer(argv)
        self.server.wait_for(READY, timeouts.EVENT)

    def kill(self) -> None:
        """SIGKILL: what the server acknowledged is in its append-only file, nothing else is promised."""
        assert self.server is not None
        self.server.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(signal.SIGTERM, timeouts.PROMPT)


@contextlib.contextmanager
def redis_running(prefix: str = "framepool-redis-") -> Iterator[RedisServer]:
    """A Redis in a fresh temp directory, stopped and the directory removed on exit (fixture, benchmarks)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        server = RedisServer(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the module, stopped (and its directory removed) at the end."""
    with redis_running() as server:
        yield server
