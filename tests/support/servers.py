"""Where the Redis and PostgreSQL binaries the sink tests run are (and the reference tools the processor
tests run: espeak-ng, multimon-ng, promtool; the browser the dashboard tests drive; the container tools the
image test runs), and how one of them runs as a child whose log is awaited (test process; `make servers`
asks this module which Debian packages to install).

    python -m tests.support.servers missing    # prints the Debian packages to install, nothing when none

Redis: `redis-server` on PATH or in /usr/bin. PostgreSQL: one directory holding `initdb` and
`postgres` of the same version: the one `initdb` on PATH resolves to, else the newest
/usr/lib/postgresql/<version>/bin (Debian keeps the server binaries there, off PATH).
"""

from __future__ import annotations

import ctypes.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

POSTGRES_TOOLS = ("initdb", "postgres")


def redis_server_binary() -> Path | None:
    """The `redis-server` to run, or None when Redis is not installed."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/local/bin")
    return Path(found) if found else None


def postgres_bindir() -> Path | None:
    """The directory of one PostgreSQL version's `initdb` and `postgres`, or None."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)

    def version(path: Path) -> int:
        match = re.fullmatch(r"\d+", path.parent.name)
        return int(match.group()) if match else -1

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in POSTGRES_TOOLS):
            return bindir
    return None


def missing_packages() -> list[str]:
    """The Debian packages that provide what is not found."""
    missing = []
    if redis_server_binary() is None:
        missing.append("redis-server")
    if postgres_bindir() is None:
        missing.append("postgresql")
    # Reference tools the processor tests run: speech for the VAD corpus and DTMF talk-off, a DTMF decoder;
    # promtool checks /metrics (tests/support/metrics.py; Debian ships it in the prometheus package); the
    # browser the status page is tested in (tests/support/chromium.py); the systemd tests: the units'
    # checker, `ps` for process titles.
    tools = (
        ("espeak-ng", "espeak-ng"),
        ("multimon-ng", "multimon-ng"),
        ("promtool", "prometheus"),
        ("chromium", "chromium"),
        ("systemd-analyze", "systemd"),
        ("ps", "procps"),
    )
    for tool, package in tools:
        if shutil.which(tool) is None:
            missing.append(package)
    if ctypes.util.find_library("seccomp") is None:  # the units' sandbox, reproduced by the systemd tests
        missing.append("libseccomp2")
    # The image test (tests/image): builds with podman, runs with runc and catatonit (--init), and makes its
    # base image with mmdebstrap (tests/support/image.py says why each).
    for tool in ("podman", "runc", "catatonit", "mmdebstrap"):
        if shutil.which(tool) is None:
            missing.append(tool)
    return missing


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LoggedServer:
    """A server child in its own session: its output is read by a thread (so the server never blocks on a
    full pipe) and `wait_for` awaits a log line instead of polling the port. `kill` is SIGKILL to the whole
    session (PostgreSQL's backends die with the postmaster, as in a machine crash)."""

    def __init__(self, argv: Sequence[str | os.PathLike[str]], **popen: Any) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
            **popen,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float, start: int = 0) -> int:
        """Block until a log line from index `start` on contains `text`; its index. RuntimeError with the
        log when the server exits first or `timeout` passes."""

        def found() -> int | None:
            hits = [i for i, line in enumerate(self.lines[start:], start) if text in line]
            return hits[0] if hits else None

        with self._changed:
            ok = self._changed.wait_for(
                lambda: found() is not None or not self._reader.is_alive(), timeout=timeout
            )
            index = found()
        if not ok or index is None:
            log = "\n".join(self.lines[-30:])
            raise RuntimeError(f"server did not log {text!r} within {timeout} s:\n{log}")
        return index

    def kill(self) -> None:
        """SIGKILL to the server and every process of its session; returns once the server is reaped."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._reader.join()

    def stop(self, sig: signal.Signals, timeout: float) -> None:
        """`sig` (the server's clean shutdown), then SIGKILL if it has not exited within `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


if __name__ == "__main__":
    if sys.argv[1:] != ["missing"]:
        sys.exit("usage: python -m tests.support.servers missing")
    print(" ".join(missing_packages()))
