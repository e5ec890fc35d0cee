"""Starting a worker process: multiprocessing, the worker's entry point, its pidfd (supervisor process).

The target is `framepool.ipc.lifecycle.worker_entry`, which imports the worker runtime inside the child:
the supervisor never imports `framepool.worker`.

Every process multiprocessing starts for the pool (spawn workers, the forkserver, the resource tracker) is
started from one thread, `framepool-starter`, that lives as long as the supervisor. The kernel's
parent-death signal, which workers and the forkserver arm, fires when the *thread* that forked them ends,
not the process: started from a thread of asyncio's default executor, they would be killed when that
executor shuts down (the end of an event loop) while the supervisor lives on, or outlive it if it does not.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import multiprocessing
import multiprocessing.forkserver
import os
import weakref
from multiprocessing.process import BaseProcess

from framepool.errors import PoolError
from framepool.ipc.lifecycle import worker_entry

# Workers ignore SIGTERM (the supervisor's ladder stops them), so multiprocessing's exit hook, which
# terminates daemonic children and joins them, would wait forever for workers of a pool nobody closed.
# This hook, registered after multiprocessing's and so run before it, kills them first.
_running: weakref.WeakSet[BaseProcess] = weakref.WeakSet()


@atexit.register
def _kill_unclosed_workers() -> None:
    for process in list(_running):
        if process.is_alive():
            process.kill()


# One thread, never ended before interpreter exit: the parent thread of every process started here.
_starter = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="framepool-starter")


def forget(process: BaseProcess) -> None:
    """The process has been reaped: the exit hook no longer needs to kill it."""
    _running.discard(process)


def start_process(method: str, sock: object, slot: int) -> tuple[BaseProcess, int, int]:
    """Blocking part of a spawn (runs in a thread): start the process, return it, its pid and a pidfd (-1 if
    it is already gone)."""
    return _starter.submit(_start_process, method, sock, slot).result()


def _start_process(method: str, sock: object, slot: int) -> tuple[BaseProcess, int, int]:
    """On the starter thread: the parent thread of the worker (spawn) or of the forkserver and tracker."""
    ctx = multiprocessing.get_context(method)
    expected_parent = _expected_parent(method)
    name = f"framepool-worker-{slot}"
    process = ctx.Process(  # type: ignore[attr-defined]
        target=worker_entry, args=(sock, expected_parent), name=name, daemon=True
    )
    process.start()
    _running.add(process)
    assert process.pid is not None
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        pidfd = -1
    return process, process.pid, pidfd


def _expected_parent(method: str) -> int:
    """The pid a new worker's parent has: the forkserver's under forkserver, ours under spawn."""
    if method != "forkserver":
        return os.getpid()
    # The forkserver's pid is private to multiprocessing; without it the check below cannot be made exact.
    server = multiprocessing.forkserver._forkserver
    server.ensure_running()
    pid = getattr(server, "_forkserver_pid", None)
    if not isinstance(pid, int):
        raise PoolError(
            "cannot find the forkserver's pid (multiprocessing changed); use start_method = spawn"
        )
    return pid
