"""Whom a worker's death is blamed on, and the processor call budget the worker is given (supervisor process).

A worker that hangs, crashes or grows past its memory limit is killed or reaped and replaced by the pool,
as always. What this module adds is the question "which processor did it": the worker's activity page
(`framepool.ipc.activity`) names the call it was in when it died (or the call the pool cut off because it
ran past its hard limit), and the processor whose calls grew its peak memory most. That processor, on that
stream, gets an incident (`StreamAttachment.incident`); after `quarantine_incidents` of them it is
quarantined there: the replacement worker never constructs or runs it on that stream again, while the
stream's other processors and every other stream go on. A processor that is merely always over budget is
quarantined by the worker itself (`processor_over_budget_limit`), which tells the pool.

Blame is taken only from evidence: a worker that died between calls, with nothing in flight (and, for a
memory kill, no processor that grew it), is a worker failure as before, and every stream on it gets fresh
rings. When a processor is blamed, only its own stream's frames may be poison: the other streams keep
their rings (and the frames in them) across the restart, and the replacement starts without the crash
backoff, so healthy neighbours lose at most what arrives while the blamed call holds the worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from framepool.ipc import control
from framepool.settings import Settings

if TYPE_CHECKING:
    from framepool.pool.process import WorkerProcess


@dataclass(frozen=True, slots=True)
class Blame:
    stream: int  # index of the stream on the dead worker
    processor: int  # index of the processor in that stream's spec
    reason: str  # why, for the incident's event and log line


def call_budget(settings: Settings) -> control.CallBudget:
    """The processor_budget_* settings as the worker receives them."""
    return control.CallBudget(
        fixed_s=settings.processor_budget_ms / 1000,
        frames=settings.processor_budget_frames,
        min_s=settings.processor_budget_min_ms / 1000,
        hard=settings.processor_budget_hard,
        over_limit=settings.processor_over_budget_limit,
    )


def blame_of(worker: WorkerProcess) -> Blame | None:
    """The processor call the worker's death is blamed on, read from its activity page; None without one."""
    killed_for = worker.killed_for.name if worker.killed_for is not None else ""
    if killed_for == "KILL_MEMORY":
        grower = worker.activity.grower()
        if grower is not None:
            return Blame(
                grower.stream,
                grower.processor,
                f"its calls grew the worker's memory by {grower.bytes >> 20} MiB; {worker.kill_reason}",
            )
    call = worker.overrun if killed_for == "KILL_OVER_BUDGET" else worker.activity.read()
    if call is None:
        return None
    took = time.monotonic() - call.started
    if killed_for == "KILL_OVER_BUDGET":
        hard = call.deadline - call.started
        reason = f"one call ran {took:.1f} s, past its hard limit of {hard:.2f} s; the worker was killed"
    elif killed_for == "KILL_HUNG":
        reason = f"the worker hung in its call ({worker.kill_reason})"
    elif killed_for == "KILL_MEMORY":
        reason = f"the worker ran out of memory in its call ({worker.kill_reason})"
    else:
        reason = f"the worker died in its call with {worker.exit_report()}"
    return Blame(call.stream, call.processor, reason)


def log_quarantined(stream_id: str, labels: Mapping[str, str], processor: str, detail: str) -> None:
    """One error line: `processor` is quarantined on the stream `stream_id` (labels: room, participant...)."""
    where = ", ".join(f"{key} {labels[key]}" for key in ("room", "participant", "track") if key in labels)
    logging.getLogger("framepool.pool").error(
        "processor %s quarantined on stream %s%s: %s",
        processor,
        stream_id,
        f" ({where})" if where else "",
        detail,
        extra={**labels, "stream": stream_id, "processor": processor},
    )
