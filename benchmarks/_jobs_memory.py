"""Where a job's memory goes: per-mapping PSS growth between K0 and K1 jobs (harness process, a diagnostic).

    .venv/bin/python benchmarks/_jobs_memory.py framepool 4 12
    .venv/bin/python benchmarks/_jobs_memory.py sdk-floor 4 12

Starts a dev server, the load generator and one system as `jobs.py` does, grows it to K0 jobs, waits, reads
/proc/<pid>/smaps of every process of its tree, grows it to K1, waits, reads again and prints, per process,
the PSS growth per extra job by kind of mapping: `memfd:framepool-ring` (framepool's shared-memory rings,
counted half in the supervisor and half in the worker), `anon` and `[heap]` (native and Python heaps),
`file`. For framepool it also prints the Python allocations that grew (tracemalloc in the agent process,
`_jobs_agent.py --tracemalloc`), by line: what framepool itself keeps per job, as opposed to the SDK's
native memory, which tracemalloc does not see.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

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
            kind = ("memfd:" + path[7:].split()[0] if path.startswith("/memfd:") else "anon" if not path
                    else path if path.startswith("[") else "file")
        elif line.startswith("Pss:"):
            kinds[kind] = kinds.get(kind, 0) + int(line.split()[1])
    return kinds


def tree_pss(root: int) -> dict[str, dict[str, int]]:
    return {f"{p.pid} {p.name()}": pss_by_kind(p.pid) for p in ProcessSet.tree(root).processes}


def print_growth(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], jobs_added: int) -> None:
    for process, kinds in after.items():
        old = before.get(process, {})
        growth = {k: (kinds.get(k, 0) - old.get(k, 0)) / jobs_added for k in set(kinds) | set(old)}
        total = sum(growth.values())
        shown = ", ".join(f"{k} {v:.0f}" for k, v in sorted(growth.items(), key=lambda kv: -abs(kv[1])) if abs(v) >= 2)
        print(f"  {process}{'' if process in before else ' (new)'}: {total:.0f} kB/job ({shown})")


async def diagnose(which: str, k0: int, k1: int) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="framepool-jobs-memory-"))
    async with jobs.testbed("memory", log_dir) as bed:
        url, loadgen, devserver = bed.url, bed.loadgen, bed.devserver
        if which == "framepool":
            framepool = FramepoolSystem(url, log_dir, 0, 0.75)
            framepool.agent.argv.append("--tracemalloc")
            system, root = framepool, framepool.agent
        else:
            floor = FloorSystem(url, log_dir, jobs.framepool_frame_ms())
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
        print(f"{which}, K {k0} -> {k1}: PSS {(sample1.pss_bytes - sample0.pss_bytes) / added / 1024:.0f} kB per job, "
              f"USS {(sample1.uss_bytes - sample0.uss_bytes) / added / 1024:.0f} kB per job")
        print_growth(before, after, added)
        if which == "framepool":
            reply = await root.request({"op": "python_memory", "top": 25})
            print(f"  Python allocations that grew (tracemalloc; {reply['traced_bytes'] / 1024:.0f} kB traced in all):")
            for where, size, blocks in reply["growth"]:
                print(f"    {size / added / 1024:7.1f} kB/job {blocks / added:6.1f} blocks/job  {where}")


def main() -> int:
    if len(sys.argv) != 4 or sys.argv[1] not in ("framepool", "sdk-floor") or not all(a.isdigit() for a in sys.argv[2:]):
        print("usage: _jobs_memory.py framepool|sdk-floor K0 K1 (K1 > K0 >= 1)", file=sys.stderr)
        return 2
    k0, k1 = int(sys.argv[2]), int(sys.argv[3])
    if not 1 <= k0 < k1:
        print("usage: _jobs_memory.py framepool|sdk-floor K0 K1 (K1 > K0 >= 1)", file=sys.stderr)
        return 2
    asyncio.run(diagnose(sys.argv[1], k0, k1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
