"""Every bound a test waits with, in one place (test process; nothing here runs in a worker).

Most are upper bounds on waiting for something a correct program does far sooner: a passing test never
waits them out, they only decide how late a broken program fails. On a slow or loaded machine multiply all
of them, and pytest-timeout's limit per test, by one factor:

    FRAMEPOOL_TEST_TIMEOUT_SCALE=3 make test

Settings that tests hand to the code under test (ping_timeout, worker_shutdown_timeout, drain_timeout, ...)
are part of what is tested, not bounds of the test, and stay with the tests.
"""

from __future__ import annotations

import os

SCALE = float(os.environ.get("FRAMEPOOL_TEST_TIMEOUT_SCALE", "1"))
if not SCALE > 0:
    raise ValueError(f"FRAMEPOOL_TEST_TIMEOUT_SCALE must be a positive number, got {SCALE}")

EVENT = 30.0 * SCALE
"""One outcome of code that is already running, in this process or another: a result from a worker, an SDK
event, a log record, a message, a registration, a task starting, a process exiting when told to."""

PROCESS = 90.0 * SCALE
"""A child Python process from its start: interpreter, imports, a pool or daemon booting, then its first
report or its whole run (a CLI command, a supervisor script, a ring stress process)."""

PER_TEST = 120.0 * SCALE
"""pytest-timeout's limit for one whole test (tests/conftest.py sets it; --timeout or PYTEST_TIMEOUT win)."""

PROMPT = 5.0 * SCALE
"""Asserted, not only waited for: how long something the code promises to do at once may take on a loaded
2-core machine (the dev server exits after SIGTERM, bounding its own shutdown at ~1.5 s; orphaned workers
die of their parent-death signal)."""

QUIET = 2.0 * SCALE
"""How long a test gives something that must not happen (a refused request being applied) before it
concludes that it did not; every run pays it in full."""

ORPHANS_GONE = 2.0 * SCALE
"""Asserted: the promise that a dead supervisor's workers, forkserver and resource tracker are gone within
this long of its death, whatever they were doing (parent-death signals, then the tracker's end of file)."""
