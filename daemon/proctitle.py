"""Process titles, so `ps`, `top` and `systemctl status` tell framepool's processes apart (every process).

Without them every worker reads `python3 -B -c from multiprocessing.forkserver import main…`. Two names are
set, because tools read different ones:
- the command line (/proc/<pid>/cmdline: `ps -o args`, `pgrep -f`, the cgroup tree of `systemctl status`):
  `framepool: supervisor [agent, …]`, `framepool: worker N (cpu C)`, `framepool: forkserver`,
  `framepool: bridge`;
- the kernel's 15-byte thread name (/proc/<pid>/comm: `top`, `ps -o comm`, `pgrep` without -f) of the
  calling thread, which the threads it starts later inherit: `fp-supervisor`, `fp-worker-N`,
  `fp-forkserver`, `fp-bridge`. Left to setproctitle it would be the title cut at 15 bytes, which reads
  `framepool: work` for every worker.

setproctitle rewrites the argv area in place (the only way to change what the kernel shows as cmdline) and
calls prctl(PR_SET_NAME). Rejected: prctl alone, which changes only the 15-byte name; and rewriting argv
through ctypes, which needs the address of the original argv block that CPython does not expose.

To fit a title longer than the command line, setproctitle also takes over the environment block that follows
argv (moving `os.environ` elsewhere first), so /proc/<pid>/environ no longer shows the environment. The
supervisor lets it (`framepool start --config f.toml` is shorter than its title, and its environment holds
the LiveKit credentials, which /proc/<pid>/environ then stops showing); the forkserver, workers and bridge
keep theirs readable (SPT_NOENV, for that first call only): their command lines (`python3 -c from
multiprocessing.forkserver import main…`) have room for the title, and /proc/<pid>/environ is how an
operator checks that a worker got the allow-listed environment and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import setproctitle

PREFIX = "framepool: "


def set_title(title: str, thread_name: str, keep_environment: bool = True) -> None:
    """`framepool: <title>` as the command line, `thread_name` (at most 15 bytes) as the thread's name;
    `keep_environment`: within the argv area only (see the module docstring)."""
    if keep_environment:
        os.putenv("SPT_NOENV", "1")  # read once, by setproctitle's first call; never in os.environ
    setproctitle.setproctitle(PREFIX + title)
    os.unsetenv("SPT_NOENV")
    setproctitle.setthreadtitle(thread_name[:15])


def supervisor_title(agent_names: Iterable[str]) -> None:
    """The supervisor, with the agents it serves (an unnamed agent is LiveKit's automatic dispatch)."""
    names = ", ".join(name or "(automatic)" for name in agent_names)
    set_title(f"supervisor [{names}]", "fp-supervisor", keep_environment=False)


def worker_title(index: int, cpu: int | None) -> None:
    """A worker once it knows its index and CPU (its start message); None: not pinned."""
    set_title(f"worker {index} (cpu {'any' if cpu is None else cpu})", f"fp-worker-{index}")


def forkserver_title() -> None:
    set_title("forkserver", "fp-forkserver")


def bridge_title() -> None:
    set_title("bridge", "fp-bridge")
