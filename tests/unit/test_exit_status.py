"""The two exit-status contracts: the `framepool` command's (ExitStatus) and a worker's (WorkerExit).

No number means two things across them, and the README's Operations section lists every value of both.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

from framepool.errors import ConfigError, CrashLoopError, ExitStatus, PoolHaltedError, ServerUnavailableError
from framepool.ipc.lifecycle import WorkerExit, describe_exit

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
ROW = re.compile(r"^  \| (\d+|signal 9) \| (`framepool`|worker) \| (.*?) \|", re.M)


def readme_rows(who: str) -> dict[str, str]:
    return {status: meaning for status, row_who, meaning in ROW.findall(README) if row_who == who}


def test_no_number_means_two_things() -> None:
    assert {int(s) for s in ExitStatus} & {int(w) for w in WorkerExit} == {0}  # 0: a clean end in both
    # A worker's codes stay clear of Python's own 1 (an uncaught exception before the worker's exit point)
    # and of the shell's 128+signal.
    assert all(code == 0 or 1 < code < 128 for code in WorkerExit)


def test_the_readme_lists_every_status_of_both_tables() -> None:
    assert set(readme_rows("`framepool`")) == {str(int(s)) for s in ExitStatus}
    workers = readme_rows("worker")
    assert set(workers) == {str(int(w)) for w in WorkerExit} | {"signal 9"}
    for code in WorkerExit:
        if code:
            assert workers[str(int(code))].startswith(code.name), code


def test_errors_carry_their_status() -> None:
    assert ConfigError.exit_code == ExitStatus.CONFIG
    assert ServerUnavailableError.exit_code == ExitStatus.UNAVAILABLE
    assert CrashLoopError.exit_code == PoolHaltedError.exit_code == ExitStatus.POOL_HALTED


def test_worker_exits_read_the_same_in_every_log_line() -> None:
    assert describe_exit(WorkerExit.PREWARM_FAILED) == "exit code 66 (PREWARM_FAILED)"
    assert describe_exit(1) == "exit code 1"  # not ours: Python's status for an uncaught exception
    assert describe_exit(-9) == "signal 9"
    assert describe_exit(None) == "an unknown status"


def test_a_run_cut_short_by_a_signal_exits_128_plus_the_signal() -> None:
    assert ExitStatus.of_signal(signal.SIGINT) == ExitStatus.INTERRUPTED == 128 + signal.SIGINT
    assert ExitStatus.of_signal(signal.SIGTERM) == ExitStatus.TERMINATED == 128 + signal.SIGTERM
