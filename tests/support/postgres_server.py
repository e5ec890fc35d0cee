"""A real PostgreSQL on loopback for the PostgreSQL sink tests (test process starts it as its child).

One cluster per test module (`postgres_server` fixture): `initdb` into a fresh temp directory, then
`postgres` listening on 127.0.0.1 at a free port, its socket in the same directory, trust authentication
for the superuser `postgres`. PostgreSQL refuses to run as root, so as root both run as the system user
`postgres` (Debian's package creates it) or else `nobody`, which then owns the directory. Dynamic shared
memory lives in the data directory (`dynamic_shared_memory_type=mmap`), so a killed server leaves nothing in
/dev/shm for another test to find. `kill()` is SIGKILL to the postmaster and its backends; `start()` again
runs crash recovery. Installed by `make servers` (Debian's postgresql).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import timeouts
from tests.support.servers import LoggedServer, free_port, postgres_bindir

READY = "database system is ready to accept connections"


def _run_as() -> dict[str, Any]:
    """Popen arguments that drop root to an unprivileged system user (none when not root)."""
    if os.getuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root and there is neither a `postgres` nor a `nobody` user to run as")


class PostgresServer:
    """One cluster: `dsn`, `kill()`, `start()` (again after a kill: crash recovery), `stop()`."""

    def __init__(self, directory: Path) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL not found: run `make servers` (installs Debian's postgresql)")
        self.bindir = bindir
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.server: LoggedServer | None = None
        self._as = _run_as()
        self._env = {"PATH": os.environ.get("PATH", ""), "HOME": str(directory), "LC_ALL": "C", "TZ": "UTC"}
        if self._as:
            os.chown(directory, self._as["user"], self._as["group"])

    def init(self) -> None:
        argv = [self.bindir / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        argv += ["--locale=C", "--no-sync"]
        done = subprocess.run(
            argv, capture_output=True, text=True, env=self._env, timeout=timeouts.PROCESS, **self._as
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        """Start the postmaster and return once it accepts connections (after crash recovery, if any)."""
        argv = [self.bindir / "postgres", "-D", self.data, "-p", str(self.port), "-k", self.directory]
        for setting in (
            "listen_addresses=127.0.0.1",
            "dynamic_shared_memory_type=mmap",
            "max_connections=40",
        ):
            argv += ["-c", setting]
        self.server = LoggedServer(argv, env=self._env, **self._as)
        self.server.wait_for(READY, timeouts.EVENT)

    def kill(self) -> None:
        """SIGKILL to the postmaster and its backends: committed transactions survive, nothing else."""
        assert self.server is not None
        self.server.kill()

    def stop(self) -> None:
        """Fast shutdown (SIGINT: abort sessions, checkpoint, exit)."""
        if self.server is not None:
            self.server.stop(signal.SIGINT, timeouts.PROMPT)


@contextlib.contextmanager
def postgres_running(prefix: str = "framepool-pg-") -> Iterator[PostgresServer]:
    """A PostgreSQL cluster in a fresh temp directory, stopped and removed on exit (fixture, benchmarks)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        server = PostgresServer(directory)
        server.init()
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the module, stopped and removed at the end."""
    with postgres_running() as server:
        yield server
