"""Where a job's memory goes: per-mapping PSS growth between K0 and K1 jobs (harness process, a diagnostic).

    .venv/bin/python benchmarks/_jobs_memory.py framepool 4 12
    .venv/bin/python benchmarks/_jobs_memory.py sdk-floor 4 12
    .venv/bin/python benchmarks/_jobs_memory.py sdk-floor 4 12 --single-peer-connection   # the /rtc/v1 mode

Starts a dev server, the load generator and one system as `jobs.py` does, grows it to K0 jobs, waits, reads
/proc/<pid>/smaps of every process of its tree, grows it to K1, waits, reads again and prints, per process,
the PSS growth per extra job by kind of mapping: `memfd:framepool-ring` (framepool's shared-memory rings,
counted half in the supervisor and half in the worker), `anon` and `[heap]` (native and Python heaps), `file`,
and the threads and file descriptors each extra job adds. For framepool it also prints the Python allocations
that grew (tracemalloc in the agent process, `_jobs_agent.py --tracemalloc`), by line: what framepool itself
keeps per job, as opposed to the SDK's native memory, which tracemalloc does not see.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jobs
from _jobs_procs import ProcessSet
from _jobs_systems import FloorSystem, FramepoolSystem

SETTLE = 6.0  # seconds after the last start: the new rooms' buffers fill up
MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def pss_by_kind(pid: int) -> dict[str, int]:
    """PSS in kB of one process, by kind of mapping."""
    kinds: dict[str, int] = {}
    kind = "anon"
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return kinds
    for line in text.splitlines():
        if MAPPING.match(line):
            parts = line.split(None, 5)
            path = parts[5].strip() if len(parts) > 5 else ""
            kind = (
                "memfd:" + path[7:].split()[0]
                if path.startswith("/memfd:")
                else "anon"
                if not path
                else path
                if path.startswith("[")
                else "file"
            )
        elif line.startswith("Pss:"):
            kinds[kind] = kinds.get(kind, 0) + int(line.split()[1])
    return kinds


def tree_pss(root: int) -> dict[str, dict[str, int]]:
    """PSS by kind per process, plus its thread and file-descriptor counts (`threads`, `fds`)."""
    tree: dict[str, dict[str, int]] = {}
    for p in ProcessSet.tree(root).processes:
        kinds = pss_by_kind(p.pid)
        try:
            counts = {"threads": p.num_threads(), "fds": p.num_fds()}
        except psutil.Error:
            counts = {}
        tree[f"{p.pid} {p.name()}"] = {**kinds, **{f"#{k}": v for k, v in counts.items()}}
    return tree


def print_growth(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], jobs_added: int
) -> None:
    for process, kinds in after.items():
        old = before.get(process, {})
        growth = {k: (kinds.get(k, 0) - old.get(k, 0)) / jobs_added for k in set(kinds) | set(old)}
        counts = {k[1:]: v for k, v in growth.items() if k.startswith("#")}
        memory = {k: v for k, v in growth.items() if not k.startswith("#")}
        total = sum(memory.values())
        shown = ", ".join(
            f"{k} {v:.0f}" for k, v in sorted(memory.items(), key=lambda kv: -abs(kv[1])) if abs(v) >= 2
        )
        per_job = ", ".join(f"{v:+.1f} {k}" for k, v in counts.items())
        print(
            f"  {process}{'' if process in before else ' (new)'}: {total:.0f} kB/job ({shown}); "
            f"per job {per_job}"
        )


async def diagnose(which: str, k0: int, k1: int, single_peer_connection: bool = False) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="framepool-jobs-memory-"))
    async with jobs.testbed("memory", log_dir) as bed:
        url, loadgen, devserver = bed.url, bed.loadgen, bed.devserver
        if which == "framepool":
            framepool = FramepoolSystem(url, log_dir, 0, 0.75, single_peer_connection)
            framepool.agent.argv.append("--tracemalloc")
            system, root = framepool, framepool.agent
        else:
            floor = FloorSystem(
                url, log_dir, jobs.framepool_frame_ms(), single_peer_connection=single_peer_connection
            )
            system, root = floor, floor.floor
        bed.system = system
        await system.start()
        ramp = jobs.Ramp(system, loadgen, devserver, jobs.QUICK, time.monotonic() + 3600)
        await ramp.grow_to(k0, 4, [], None)
        await asyncio.sleep(SETTLE)
        if which == "framepool":
            await root.request({"op": "python_memory"})
        before, sample0 = tree_pss(root.pid), ProcessSet.tree(root.pid).sample()
        await ramp.grow_to(k1, 4, [], None)
        await asyncio.sleep(SETTLE)
        after, sample1 = tree_pss(root.pid), ProcessSet.tree(root.pid).sample()
        added = k1 - k0
        print(
            f"{which}, K {k0} -> {k1}: "
            f"PSS {(sample1.pss_bytes - sample0.pss_bytes) / added / 1024:.0f} kB per job, "
            f"USS {(sample1.uss_bytes - sample0.uss_bytes) / added / 1024:.0f} kB per job"
        )
        print_growth(before, after, added)
        if which == "framepool":
            reply = await root.request({"op": "python_memory", "top": 25})
            print(
                f"  Python allocations that grew "
                f"(tracemalloc; {reply['traced_bytes'] / 1024:.0f} kB traced in all):"
            )
            for where, size, blocks in reply["growth"]:
                print(f"    {size / added / 1024:7.1f} kB/job {blocks / added:6.1f} blocks/job  {where}")


def main() -> int:
    usage = "usage: _jobs_memory.py framepool|sdk-floor K0 K1 [--single-peer-connection] (K1 > K0 >= 1)"
    args = sys.argv[1:]
    single_pc = "--single-peer-connection" in args
    args = [a for a in args if a != "--single-peer-connection"]
    if len(args) != 3 or args[0] not in ("framepool", "sdk-floor") or not all(a.isdigit() for a in args[1:]):
        print(usage, file=sys.stderr)
        return 2
    k0, k1 = int(args[1]), int(args[2])
    if not 1 <= k0 < k1:
        print(usage, file=sys.stderr)
        return 2
    asyncio.run(diagnose(args[0], k0, k1, single_pc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
