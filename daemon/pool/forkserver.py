"""Imported once, as a preload, by the multiprocessing forkserver that forks the workers (forkserver process).

Never import it anywhere else: importing it makes the importing process ignore SIGTERM and die with its
parent.

Why SIGTERM is ignored: under `start_method = forkserver` the workers are the forkserver's children, and it
is the forkserver that reaps them and reports their exit status to the supervisor. A SIGTERM sent to the
whole process group (`kill -TERM -- -<pgid>`, a shell's job control, some container runtimes) would kill
the server in the middle of the supervisor's shutdown ladder: its workers then die of their parent-death
signal, nobody reports their exit, and init inherits them, so the supervisor could exit before they are
gone. The workers ignore SIGTERM for the same reason (`framepool.worker.main`); the forkserver already
ignores SIGINT.

Why the parent-death signal: multiprocessing's own way out for the server, the end of its "alive" pipe,
does not work once a worker exists. Every worker inherits that pipe's write end (multiprocessing hands it
to each forked child), so the server sees no end of file while a worker lives, and a worker busy in a
processor does not notice the supervisor's death until the processor returns (its parent, the server, is
still there, so its own parent-death signal never fires): worker, server and resource tracker outlived a
killed supervisor by a minute. With SIGKILL armed here, the server dies with the supervisor, its workers
die of theirs, and the tracker, whose pipe they all held, reads its end of file and exits. The signal is
tied to the *thread* that started the server; `framepool.pool.spawn` starts it (and every worker) from one
thread that lives as long as the supervisor. If the supervisor died before the signal was armed, no
worker exists yet, so the alive pipe's end of file ends the server the ordinary way.

Why non-dumpable: the server runs as the supervisor's user, unsandboxed, and forks every future worker;
were it dumpable, a sandboxed worker running as that same user could write into /proc/<server>/mem and so
run code outside the sandbox. Its children inherit the flag, so a new worker is non-dumpable until it
decides (`framepool.worker.main`: an unsandboxed worker makes itself dumpable again). Its environment is
already the workers' allow-listed one (`framepool.pool.spawn` execs it with that environment).

Its process title (`framepool: forkserver`, `framepool.proctitle`) replaces multiprocessing's
`python3 -c from multiprocessing.forkserver import main…` in `ps`.

Its logging is set up here, from that environment (`framepool.logs.LEVEL_ENV`): what it would print (a
fork that failed before the worker's code ran) comes out as the daemon's other lines do, and a worker
forked from it logs the same way until it sets up its own logging, first thing.
"""

from __future__ import annotations

import ctypes
import signal

from framepool.logs import setup_logging_from_environment
from framepool.proctitle import forkserver_title

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4

signal.signal(signal.SIGTERM, signal.SIG_IGN)
_libc = ctypes.CDLL(None, use_errno=True)
if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed in the forkserver")
if _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed in the forkserver")
forkserver_title()  # its workers show it until they read their start message (framepool.worker.main)

setup_logging_from_environment("forkserver")
