"""Imported once, as a preload, by the multiprocessing forkserver that forks the workers (forkserver process).

Never import it anywhere else: importing it makes the importing process ignore SIGTERM.

Why: under `start_method = forkserver` the workers are the forkserver's children, and it is the forkserver
that reaps them and reports their exit status to the supervisor. A SIGTERM sent to the whole process group
(`kill -TERM -- -<pgid>`, a shell's job control, some container runtimes) would kill the server in the middle
of the supervisor's shutdown ladder: its workers then die of their parent-death signal, nobody reports
their exit, and init inherits them, so the supervisor could exit before they are gone. The workers
ignore SIGTERM for the same reason (`framepool.worker.main`); the forkserver already ignores SIGINT, and it
exits on its own when the supervisor does (its end of the "alive" pipe closes).
"""

from __future__ import annotations

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
