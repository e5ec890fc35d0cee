"""The README's quick start, typed as written: each `$ command` a real `framepool` process (test process).

The README's `## Quick start` section is parsed (tests/support/quickstart.py), so a changed README changes
what runs here, and an output line the README shows that the command no longer prints fails the test.
The one change to the commands: the port. 7880 may be taken by another test run on this machine, so the
dev server is started with `--port 0` and each later command gets the flag that names that port
(`--dev-port` for `framepool dev`, `--url` for the room clients); the environment has no FRAMEPOOL_* or
LIVEKIT_* variable, as in a fresh shell. Commands shown with `^C` run in the background and get SIGINT in
the reverse order of their start, once per `^C`, after everything shown before it has been printed.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.quickstart import README, Step, Terminal, quick_start


def port_flags(step: Step, url: str) -> list[str]:
    subcommand = step.command[1]
    if subcommand == "devserver":
        return ["--port", "0"]
    if subcommand == "dev":
        return ["--dev-port", url.rsplit(":", 1)[1]]
    return ["--url", url]


async def test_readme_quick_start_runs_as_typed(tmp_path: Path) -> None:
    toml, steps = quick_start(README.read_text())
    assert [step.command[:2] for step in steps] == [
        ["framepool", "devserver"],
        ["framepool", "dev"],
        ["framepool", "publish"],
        ["framepool", "dispatch"],
        ["framepool", "listen"],
    ]
    (tmp_path / "framepool.toml").write_text(toml)
    running: list[tuple[Step, Terminal]] = []
    started: list[Terminal] = []
    url = ""
    try:
        for step in steps:
            terminal = await Terminal.start(step.command[1:] + port_flags(step, url), tmp_path)
            started.append(terminal)
            await terminal.expect(step.outputs[0])
            if step.interrupts:
                running.append((step, terminal))
            else:
                assert await terminal.exit_status() == 0, terminal.output()
            if step.command[1] == "devserver":
                url = (await terminal.wait_for(r"url:\s+(ws://\S+)"))[1]
        listener = running[-1][1]
        # Frames on the agent's own track (the difference image): its periodic summary counts them.
        await listener.wait_for(r"^  agent-\S+ video '\S+': [1-9]\d* frames")
        assert re.search(r"from agent-\S+ \(agent\)", listener.output()), listener.output()
        for step, terminal in reversed(running):
            for shown in step.outputs[1:]:
                await terminal.interrupt()
                await terminal.expect(shown)
            quick_path = step.interrupts > 1  # a second Ctrl-C: `framepool dev` cut its drain short
            assert await terminal.exit_status() == (130 if quick_path else 0), terminal.output()
    finally:
        for terminal in started:
            await terminal.kill()
