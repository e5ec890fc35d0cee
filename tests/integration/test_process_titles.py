"""Process titles of a real `framepool start` (supervisor, forkserver, worker, bridge) as `ps` shows them:
the command line (`ps -o args`) and the thread name (`ps -o comm`, /proc/<pid>/comm, what `top` shows)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from framepool.devserver.server import DevServer
from tests.support.daemon import exit_status, logged, read_log, start_with_config
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.timeouts import EVENT, PROCESS

pytestmark = pytest.mark.integration

# Two named agents, one worker (start_with_config), a sink so that the bridge process runs.
CONFIG = """
spool_dir = "{spool}"
cpus = [{cpu}]

[[sinks]]
name = "archive"
type = "tests.support.jsonl_sink:JsonLinesSink"
[sinks.options]
path = "{out}"

[[agents]]
agent_name = "titles-a"
audio = ["audio-level"]
[[agents.data.route]]
match = {{ topic = "telemetry" }}
to_bridges = ["archive"]

[[agents]]
agent_name = "titles-b"
audio = ["audio-level"]
"""


def ps(pids: list[int]) -> dict[int, tuple[str, str]]:
    """pid → (comm, args) as `ps -o pid=,comm=,args=` prints them."""
    listing = subprocess.run(
        ["ps", "-o", "pid=,comm=,args=", "-p", ",".join(map(str, pids))],
        capture_output=True, text=True, check=True, timeout=EVENT,
    ).stdout  # fmt: skip
    rows = (line.split(None, 2) for line in listing.splitlines())
    return {int(pid): (comm, args.strip()) for pid, comm, args in rows}


async def test_ps_tells_the_supervisor_forkserver_worker_and_bridge_apart(
    devserver: DevServer, tmp_path: Path
) -> None:
    cpu = max(psutil.Process().cpu_affinity() or [0])
    config = tmp_path / "framepool.toml"
    config.write_text(CONFIG.format(spool=tmp_path / "spool", out=tmp_path / "out.jsonl", cpu=cpu))
    process = await start_with_config(devserver.url, API_KEY, API_SECRET, config)
    seen: list[str] = []
    try:
        arrived = asyncio.Event()
        reading = asyncio.ensure_future(read_log(process, seen, arrived))
        await asyncio.wait_for(logged(seen, arrived, "registered 2 agent(s)"), PROCESS)
        await asyncio.wait_for(logged(seen, arrived, "bridge ready: archive"), PROCESS)
        children = psutil.Process(process.pid).children(recursive=True)
        titles = ps([process.pid, *(child.pid for child in children)])
        by_title = {args: (pid, comm) for pid, (comm, args) in titles.items()}
        assert by_title["framepool: supervisor [titles-a, titles-b]"] == (process.pid, "fp-supervisor"), (
            titles
        )
        forkserver, comm = by_title["framepool: forkserver"]
        assert comm == "fp-forkserver"
        worker, comm = by_title[f"framepool: worker 0 (cpu {cpu})"]
        assert comm == "fp-worker-0"
        assert psutil.Process(worker).ppid() == forkserver
        assert psutil.Process(worker).name() == "fp-worker-0"  # /proc/<pid>/stat, what top reads
        bridge, comm = by_title["framepool: bridge"]
        assert comm == "fp-bridge" and psutil.Process(bridge).ppid() == process.pid
        process.send_signal(signal.SIGTERM)
        reading.cancel()
        status, log = await exit_status(process, seen)
        assert status == 0, log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
