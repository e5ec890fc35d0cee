"""The supervisor's commands make it non-dumpable; the processes it execs are dumpable again."""

import subprocess
import sys

CHECK = """
import subprocess, sys
from framepool.hardening import dumpable, make_undumpable
before = dumpable()
assert make_undumpable()
child = subprocess.run([sys.executable, "-c", "from framepool.hardening import dumpable; print(dumpable())"],
                       capture_output=True, text=True, check=True).stdout.strip()
print(before, dumpable(), child)
"""


def test_make_undumpable_clears_the_flag_for_this_process_only() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "True"]  # before; after; a process it starts by exec


def test_the_supervisor_commands_call_it() -> None:
    import inspect

    from framepool import cli
    from framepool.agent import cli as agent_cli

    for function in (agent_cli._run_start, agent_cli._run_dev, agent_cli._run_connect, cli._run_process):
        assert "make_undumpable()" in inspect.getsource(function), function.__name__
