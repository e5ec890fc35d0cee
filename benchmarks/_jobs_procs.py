"""Helper processes of the jobs benchmark, seen from the harness (harness process).

Every helper (dev server, load generator, framepool agent server, baseline job) is a child process that
speaks JSON lines: requests on its stdin, replies and events on its stdout, logs on stderr (to a file, so
a chatty child can never block on a full pipe). `Helper` owns one such child; `ProcessSet` measures a
group of processes (a whole tree, or a set of baseline job processes) the way the issue asks: PSS summed
over the processes, CPU as user+system seconds.

Teardown always ends in SIGKILL of the whole tree, whatever happened before: the benchmark must leave no
process behind even when it fails half-way.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent


class HelperError(RuntimeError):
    """A helper process died, answered with an error, or did not answer in time."""


class Helper:
    """A child process speaking JSON lines; `request` matches replies by id, other lines are events."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._expected: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self.exited = asyncio.Event()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=1 << 20,
                start_new_session=True,
            )
        finally:
            os.close(log)
        self._reader = asyncio.create_task(self._read(), name=f"{self.name} reader")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            async for raw in self.proc.stdout:
                try:
                    message = json.loads(raw)
                except ValueError:  # plain text (the dev server's banner): an event the harness may wait for
                    self.events.put_nowait({"event": "line", "text": raw.decode(errors="replace").rstrip()})
                    continue
                future = self._replies.pop(message.get("id", 0), None)
                if future is None:
                    future = self._expected.pop((message.get("event", ""), message.get("room", "")), None)
                if future is not None and not future.done():
                    future.set_result(message)
                else:
                    self.events.put_nowait(message)
        finally:
            self.exited.set()
            for future in [*self._replies.values(), *self._expected.values()]:
                if not future.done():
                    future.set_exception(HelperError(f"{self.name} exited ({self.tail()})"))
                    # A waiter still gets it; an event nobody waits for any more is not an error at exit.
                    future.exception()

    def expect(self, kind: str, room: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the event `kind` about `room`; ask before causing it, so a fast event is not
        missed."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._expected[(kind, room)] = future
        return future

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        if self.exited.is_set():
            raise HelperError(f"{self.name} has exited ({self.tail()})")
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")

    def send_close(self) -> None:
        """Close the child's stdin: helpers end on their own when it closes."""
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    async def request(self, message: dict[str, Any], limit: float = 30.0) -> dict[str, Any]:
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        self.send({**message, "id": request_id})
        try:
            reply = await asyncio.wait_for(future, limit)
        except TimeoutError:
            raise HelperError(
                f"{self.name} did not answer {message.get('op')!r} in {limit:.0f} s ({self.tail()})"
            ) from None
        finally:
            self._replies.pop(request_id, None)
        if "error" in reply:
            raise HelperError(f"{self.name}: {reply['error']}")
        return reply

    async def event(self, kind: str, limit: float, contains: str = "") -> dict[str, Any]:
        """The next event of `kind` (text lines: containing `contains`); others are dropped, callers ask for
        what they expect."""

        async def wait() -> dict[str, Any]:
            while True:
                message = await self.events.get()
                if message.get("event") == kind and contains in message.get("text", ""):
                    return message

        waiting = asyncio.create_task(wait())
        exited = asyncio.create_task(self.exited.wait())
        try:
            await asyncio.wait([waiting, exited], timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            waiting.cancel()
        if waiting.done() and not waiting.cancelled():
            return waiting.result()
        why = "exited" if self.exited.is_set() else f"no {kind!r} within {limit:.0f} s"
        raise HelperError(f"{self.name}: {why} ({self.tail()})")

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(text[-lines:]) if text else "empty log"

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (the daemon drains), then SIGKILL of every process of the tree still alive."""
        if self.proc is None:
            return
        tree = ProcessSet.tree(self.proc.pid).processes
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(self.proc.wait(), grace)
            except (TimeoutError, ProcessLookupError):
                pass
        kill_all(tree)
        if self.proc.returncode is None:
            await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=5)


@dataclass
class Sample:
    """One reading of a group of processes."""

    processes: int
    pss_bytes: int
    uss_bytes: int
    cpu_seconds: float


class ProcessSet:
    """A group of processes measured together: PSS/USS sums and CPU seconds (user + system)."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        self.processes = processes

    @classmethod
    def tree(cls, pid: int) -> ProcessSet:
        try:
            root = psutil.Process(pid)
            return cls([root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            return cls([])

    @classmethod
    def of(cls, pids: list[int]) -> ProcessSet:
        processes = []
        for pid in pids:
            try:
                processes.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        return cls(processes)

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def sample(self) -> Sample:
        pss = uss = 0
        for process in self.processes:
            try:
                info = process.memory_full_info()
            except psutil.NoSuchProcess:
                continue
            pss += info.pss
            uss += info.uss
        return Sample(len(self.processes), pss, uss, self.cpu_seconds())


def python_argv(script: str, *args: str) -> list[str]:
    """Run a helper script of this directory with this interpreter (the venv), unbuffered."""
    return [sys.executable, "-u", str(BENCH_DIR / script), *args]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shm_entries() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()
