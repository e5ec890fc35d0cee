"""The README's quick start as data, and its commands as running processes (test process).

The quick start is the README section `## Quick start`: one ```toml block (the agent, saved as
framepool.toml) and ```console blocks, each a `$ command` and the output it prints. In an output, `^C` is
the reader pressing Ctrl-C (a command shown with one runs until then) and `…` stands for lines left out.
Output lines are compared by `shape`: numbers, ids, timestamps and the payload of a result differ from
run to run, the words do not.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.timeouts import EVENT, PROCESS

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FRAMEPOOL = Path(sys.executable).parent / "framepool"  # the installed console script, as a user runs it


@dataclass
class Step:
    """One `$ command` of the quick start and the output shown for it: `outputs[0]` while it runs,
    `outputs[n]` after the n-th `^C`."""

    command: list[str]
    outputs: list[list[str]] = field(default_factory=lambda: [[]])

    @property
    def interrupts(self) -> int:
        return len(self.outputs) - 1


def quick_start(readme: str) -> tuple[str, list[Step]]:
    """The framepool.toml text and the steps of the README's quick start, in order."""
    start = readme.index("\n## Quick start\n")
    end = readme.index("\n## ", start + 1)
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", readme[start:end], re.S | re.M)
    tomls = [body for language, body in blocks if language == "toml"]
    assert len(tomls) == 1, "the quick start shows one framepool.toml"
    steps: list[Step] = []
    for body in (body for language, body in blocks if language == "console"):
        command, *lines = body.splitlines()
        assert command.startswith("$ "), f"a console block starts with its command: {command!r}"
        step = Step(shlex.split(command[2:]))
        for line in lines:
            if line == "^C":
                step.outputs.append([])
            elif line.strip() != "…":
                step.outputs[-1].append(line)
        steps.append(step)
    return tomls[0], steps


def shape(line: str) -> str:
    """What stays the same from run to run: ids, numbers and a result's payload replaced."""
    line = re.sub(r": \{.*\}$", ": {…}", line)
    line = re.sub(r"\b(AJ|AW|AD|TR|PA|RM)_[A-Za-z0-9]+", "ID", line)
    line = re.sub(r"listener-[0-9a-f]{4}", "listener-ID", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return " ".join(line.split())


class Terminal:
    """One command of the quick start running as a real process, its stdout and stderr read as lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, argv: list[str], cwd: Path) -> Terminal:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMEPOOL_", "LIVEKIT_"))}
        process = await asyncio.create_subprocess_exec(
            str(FRAMEPOOL), *argv, cwd=cwd, env=environ, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._arrived.set()
        self._arrived.set()

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """The first line matching `pattern`, once it has arrived."""
        async with asyncio.timeout(EVENT):
            while True:
                for line in self.lines:
                    if match := re.search(pattern, line):
                        return match
                if self._reader.done():
                    raise AssertionError(f"no line matches {pattern!r}; output:\n" + self.output())
                self._arrived.clear()
                await self._arrived.wait()

    async def expect(self, expected: list[str]) -> None:
        """Until every expected line has arrived (compared by shape, in any order)."""
        for line in expected:
            wanted = shape(line)
            async with asyncio.timeout(EVENT):
                while wanted not in {shape(seen) for seen in self.lines}:
                    if self._reader.done():
                        raise AssertionError(f"expected a line like {line!r}; output:\n" + self.output())
                    self._arrived.clear()
                    await self._arrived.wait()

    async def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    async def exit_status(self) -> int:
        status = await asyncio.wait_for(self.process.wait(), PROCESS)
        await self._reader
        return status

    def output(self) -> str:
        return "\n".join(self.lines)

    async def kill(self) -> None:
        """A test that failed half-way leaves nothing running."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()
