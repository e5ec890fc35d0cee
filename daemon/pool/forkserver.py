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
"""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1

signal.signal(signal.SIGTERM, signal.SIG_IGN)
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed in the forkserver")
