"""What the machine offers the pool: CPUs to pin workers to, how many workers, and memory for them
(supervisor process; `framepool config` and the pool ask).

Containers count: memory is the cgroup's limit when lower than the machine's, CPUs are this process's
affinity mask, not the machine's count.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from framepool.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from framepool.settings import Settings

log = logging.getLogger("framepool.settings")

# Half the memory for the workers together: the other half is the supervisor's (every room's WebRTC stack),
# the page cache and whatever else the machine runs. The floor keeps a small machine's workers bootable
# (an idle worker with numpy is ~60 MiB PSS).
MEMORY_SHARE_FOR_WORKERS = 0.5
MIN_DERIVED_LIMIT_MB = 256
_CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")


def effective_workers(settings: Settings, available_cpus: Sequence[int]) -> int:
    """Workers to start: as configured, else one per CPU beyond the supervisor's, at least one. Logs a
    warning when more are configured than this process may use CPUs (they would share them, each slower,
    and the pool's load figure would read low)."""
    if settings.workers:
        usable = len(os.sched_getaffinity(0))
        if settings.workers > usable:
            log.warning(
                "workers = %d exceeds the %d CPU(s) this process may use (sched_getaffinity): workers share "
                "CPUs and each runs slower; set workers to at most %d, or 0 for one per CPU",
                settings.workers,
                usable,
                usable,
                extra={"workers": settings.workers, "usable_cpus": usable},
            )
        return settings.workers
    return max(1, len(available_cpus) - 1)


def derived_memory_limit_mb(workers: int) -> int:
    """The default worker_memory_limit_mb for `workers` workers on this machine."""
    share = machine_memory_mb() * MEMORY_SHARE_FOR_WORKERS / max(1, workers)
    return max(MIN_DERIVED_LIMIT_MB, int(share))


@functools.cache
def machine_memory_mb() -> int:
    """Memory this process's workers can have: the machine's, or its cgroup's limit when lower (a
    container)."""
    total = int(psutil.virtual_memory().total)
    try:
        limit = _CGROUP_MEMORY_MAX.read_text().strip()
        if limit != "max":
            total = min(total, int(limit))
    except (OSError, ValueError):
        pass
    return total >> 20


def worker_cpus(settings: Settings) -> list[int]:
    """CPUs available for pinning workers, validated against what this process may run on."""
    allowed = sorted(os.sched_getaffinity(0))
    if not settings.cpus:
        return allowed
    missing = [cpu for cpu in settings.cpus if cpu not in allowed]
    if missing:
        raise ConfigError(
            f"bad setting cpus = {settings.cpus!r}: CPU {missing[0]} is not available (allowed: {allowed})"
        )
    return list(settings.cpus)
