"""Starting a worker process: multiprocessing, the worker's entry point, its pidfd (supervisor process).

The target is `framepool.ipc.lifecycle.worker_entry`, which imports the worker runtime inside the child:
the supervisor never imports `framepool.worker`.

Every process multiprocessing starts for the pool (spawn workers, the forkserver, the resource tracker) is
started from one thread, `framepool-starter`, that lives as long as the supervisor. The kernel's
parent-death signal, which workers and the forkserver arm, fires when the *thread* that forked them ends,
not the process: started from a thread of asyncio's default executor, they would be killed when that
executor shuts down (the end of an event loop) while the supervisor lives on, or outlive it if it does not.

The environment: every process started here gets an allow-listed one (`worker_environment`: PATH, HOME,
locale, TZ, TMPDIR, the operator's PYTHON* and OpenMP/MKL/OpenBLAS thread settings, the names in
`worker_env`; never LIVEKIT_*), not the supervisor's. Replacing `os.environ` inside the child would not be
enough: a forked child's /proc/<pid>/environ shows the environment its process image was exec'd with, and
the C environ block is inherited across fork. So the exec itself gets the explicit environment:
multiprocessing starts the forkserver, the resource tracker and spawn workers with
`multiprocessing.util.spawnv_passfds`, which always passes the caller's environ; on the starter thread that
helper is replaced by the same fork-exec with an explicit environment. Workers forked by the forkserver
inherit its (already scrubbed) environment, and set `os.environ` to the pool's own list first thing
(`WorkerLaunch`). Rejected: unsetting the secrets in `os.environ` around the exec (the supervisor's SDK
threads read the environment concurrently; setenv/unsetenv are not thread-safe) and a launcher that
re-execs itself with a clean environment (the secret is readable in its /proc for the launcher's lifetime).
"""

from __future__ import annotations

import _posixsubprocess
import atexit
import concurrent.futures
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.util
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from framepool.errors import PoolError
from framepool.ipc.lifecycle import WorkerLaunch, worker_entry
from framepool.logs import FORMAT_ENV, LEVEL_ENV
from framepool.settings import Settings

# What a Python worker needs from the supervisor's environment; the operator adds names with worker_env.
BASE_NAMES = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR"})
BASE_PREFIXES = ("LC_", "PYTHON", "OMP_", "MKL_", "OPENBLAS_")
NEVER_PREFIXES = ("LIVEKIT_",)  # the credentials, even when worker_env lists them

# Workers ignore SIGTERM (the supervisor's ladder stops them), so multiprocessing's exit hook, which
# terminates daemonic children and joins them, would wait forever for workers of a pool nobody closed.
# This hook, registered after multiprocessing's and so run before it, kills them first.
_running: weakref.WeakSet[BaseProcess] = weakref.WeakSet()


@atexit.register
def _kill_unclosed_workers() -> None:
    for process in list(_running):
        if process.is_alive():
            process.kill()


_on_starter = threading.local()


def _mark_starter() -> None:
    _on_starter.active = True


# One thread, never ended before interpreter exit: the parent thread of every process started here.
_starter = concurrent.futures.ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="framepool-starter", initializer=_mark_starter
)
# Process-wide, like the forkserver itself (whose environment is fixed by the first pool that starts it);
# None until a pool configures it: then the base allow-list and no sandbox.
_launch: WorkerLaunch | None = None


def worker_environment(extra: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of `environ`; `extra` holds names, or prefixes ending in '*'."""
    names = set(BASE_NAMES) | {name for name in extra if not name.endswith("*")}
    prefixes = BASE_PREFIXES + tuple(name[:-1] for name in extra if name.endswith("*"))
    return {
        key: value
        for key, value in environ.items()
        if (key in names or key.startswith(prefixes)) and not key.startswith(NEVER_PREFIXES)
    }


def configure(settings: Settings) -> None:
    """Set how every process started from now on is launched (called by the pool as it starts)."""
    global _launch
    _launch = WorkerLaunch(
        env=worker_environment(settings.worker_env, os.environ),
        sandbox=settings.sandbox,
        sandbox_user=settings.sandbox_user,
        log_level=settings.log_level,
        log_format=settings.log_format,
    )


def _current_launch() -> WorkerLaunch:
    return _launch or WorkerLaunch(env=worker_environment((), os.environ))


def _spawnv_passfds(path: Any, args: Any, passfds: Sequence[int]) -> int:
    """multiprocessing's fork-exec helper; on the starter thread, with the allow-listed environment."""
    if not getattr(_on_starter, "active", False):
        return _original_spawnv_passfds(path, args, passfds)
    launch = _current_launch()
    # The forkserver learns how to log from its environment, its one input (`framepool.logs.LEVEL_ENV`).
    environ = {**launch.env, LEVEL_ENV: launch.log_level, FORMAT_ENV: launch.log_format}
    env = [os.fsencode(f"{key}={value}") for key, value in environ.items()]
    fds = tuple(sorted(map(int, passfds)))
    # The same call as multiprocessing.util.spawnv_passfds, with `env` instead of None (inherit). Typed Any:
    # the stub wants a str cwd and a callable preexec_fn where the runtime (and multiprocessing) pass None.
    fork_exec: Any = _posixsubprocess.fork_exec
    vfork = () if sys.version_info >= (3, 14) else (getattr(subprocess, "_USE_VFORK", True),)
    errpipe_read, errpipe_write = os.pipe()
    try:
        pid: int = fork_exec(
            args, [os.fsencode(path)], True, fds, None, env, -1, -1, -1, -1, -1, -1,
            errpipe_read, errpipe_write, False, False, -1, None, None, None, -1, None, *vfork,
        )  # fmt: skip
        return pid
    finally:
        os.close(errpipe_read)
        os.close(errpipe_write)


_original_spawnv_passfds = multiprocessing.util.spawnv_passfds
multiprocessing.util.spawnv_passfds = _spawnv_passfds


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
        target=worker_entry, args=(sock, expected_parent, _current_launch()), name=name, daemon=True
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
