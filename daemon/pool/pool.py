"""The worker pool: N CPU-pinned processor workers, stream placement, restarts, the shutdown ladder
(supervisor process).

`WorkerPool` is the supervisor's only door to the workers. It starts `settings.effective_workers`
processes (forkserver or spawn: both safe in a supervisor that already runs threads), each pinned to
one CPU and prewarmed, and places each new stream on the least-loaded worker. It watches every worker:
the process sentinel on the event loop (death), a ping every `ping_interval` (a worker silent for
`ping_timeout` is killed), PSS memory against the warn/limit settings. A dead worker is replaced after a
backoff that doubles per consecutive crash, and its streams are re-attached to the replacement with
fresh processor instances (the gap is counted and reported).

The pool decides on a worker's exit code (`framepool.ipc.lifecycle.WorkerExit`), never on a message:
- at boot, BAD_START or PREWARM_FAILED halt at once (another incarnation would fail the same way); any
  other death is retried with backoff, and `crash_loop_limit` deaths in a row before becoming ready halt
  the pool (`PoolHaltedError` at start, `halted` afterwards) instead of respawning forever;
- while serving, any exit the pool did not ask for (a crash, RUNTIME_ERROR, CHANNEL_LOST, a signal) is a
  restart; a worker the pool killed itself is reported with the reason, memory kills counted apart
  (`WorkerStats.memory_restarts`).
One heartbeat loop serves every worker (cheaper on two cores than one task each): it measures PSS off the
loop, then acts on each worker's `check_health(now)`: ping, warn, dump the stack of a silent worker
(SIGUSR1) and kill it at the next heartbeat, or kill it for memory.

Shutdown (`aclose`): detach every stream (processors' close() runs, final results delivered), then per
worker the ladder Shutdown → ShutdownAck → exit → SIGKILL, each rung bounded by
`worker_shutdown_timeout` on the monotonic clock and logged once when taken. A rung ends when the worker is
reaped, not when its channel closes: when `aclose` returns, no worker pid exists any more. `close_budget`
is the longest that takes, counted into the daemon's stop budget (`framepool.service.stop_budget`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import multiprocessing
import resource
import time
from collections.abc import Coroutine, Sequence
from typing import Any

import msgspec

from framepool.errors import ChannelError, CrashLoopError, PoolError, PoolHaltedError, ProcessorError
from framepool.ipc import control
from framepool.ipc.lifecycle import FATAL_AT_BOOT, WorkerExit, describe_exit
from framepool.machine import effective_workers, worker_cpus
from framepool.pool import liveness, spawn
from framepool.pool.contract import StreamSink, StreamSpec, StreamStats
from framepool.pool.figures import PoolTimings, StreamTotals, restart_reason
from framepool.pool.formats import input_format_of, ring_slots
from framepool.pool.liveness import HealthAction
from framepool.pool.placement import least_loaded
from framepool.pool.process import WorkerProcess, WorkerState
from framepool.pool.quarantine import blame_of
from framepool.pool.stream import StreamAttachment
from framepool.processors.kinds import kind_of, media_kind
from framepool.processors.registry import ProcessorSpec
from framepool.settings import Settings
from framepool.tasks import TaskSet, first_of

STACK_DUMP_GRACE = 0.1  # seconds between SIGUSR1 and SIGKILL for a call cut off at its hard limit

__all__ = ["PoolStats", "WorkerPool", "WorkerStats", "close_budget"]  # the package re-exports the rest

log = logging.getLogger("framepool.pool")
# `aclose`: detaching the streams, then each worker's ladder: ShutdownAck, exit, reaped after SIGKILL.
CLOSE_RUNGS = 4
# Beyond the rungs: cancelling restarts in flight, reaping, closing fds and rings (milliseconds; counted).
CLOSE_MARGIN = 0.5


class WorkerStats(msgspec.Struct, frozen=True, kw_only=True):
    slot: int
    pid: int
    cpu: int | None
    state: str
    streams: int
    load: float
    restarts: int
    memory_restarts: int  # of `restarts`, those after the pool killed the worker for worker_memory_limit_mb
    protocol_restarts: int  # of `restarts`, those after it broke the protocol (framepool.pool.process)
    pss_bytes: int
    cpu_seconds: float  # the kernel's CPU count of every incarnation in this slot (the dead: last reading)
    restart_reasons: dict[str, int]  # `restarts` by reason (framepool.pool.figures.restart_reason)
    exitcode: int | None  # of the current incarnation, once it exited (framepool.ipc.lifecycle.WorkerExit)


class PoolStats(msgspec.Struct, frozen=True, kw_only=True):
    workers: list[WorkerStats]
    streams: int
    restarts: int
    load: float  # the busiest worker's
    halted: bool


def close_budget(settings: Settings) -> float:
    """The longest `WorkerPool.aclose` takes: CLOSE_RUNGS rungs of worker_shutdown_timeout + CLOSE_MARGIN."""
    return CLOSE_RUNGS * settings.worker_shutdown_timeout + CLOSE_MARGIN


class _Slot:
    """A worker position (one CPU) across the incarnations that fill it."""

    def __init__(self, index: int, cpu: int | None) -> None:
        self.index = index
        self.cpu = cpu
        self.worker: WorkerProcess | None = None
        self.restarts = 0
        self.memory_restarts = 0
        self.protocol_restarts = 0
        self.restart_reasons: collections.Counter[str] = collections.Counter()
        self.cpu_retired = 0.0  # CPU seconds of the incarnations that exited
        self.crash_streak = 0
        self.ready_at = 0.0

    def cpu_seconds(self) -> float:
        """The kernel's CPU count of every incarnation: the exited ones' last readings, the current's now."""
        worker = self.worker
        live = worker is not None and worker.state is not WorkerState.EXITED
        return self.cpu_retired + (worker.cpu_time() if worker is not None and live else 0.0)


class WorkerPool:
    """See the module docstring. Create, `await start()`, `attach` streams, `await aclose()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.halted = asyncio.Event()
        self.halt_reason = ""
        self._slots: list[_Slot] = []
        self._streams: set[StreamAttachment] = set()
        self.timings = PoolTimings()
        self._retired = StreamTotals()  # what detached streams counted
        self._tasks = TaskSet("worker pool", log)
        self._any_ready = asyncio.Event()
        self._closing = False
        self._closed = asyncio.Event()
        self._pings = 0
        self._beat: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    # -- start ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn, pin, prewarm and handshake every worker; PoolError or PoolHaltedError if they cannot."""
        if self._slots:
            raise PoolError("the worker pool is already started")
        raise_fd_limit()
        cpus = worker_cpus(self.settings)
        count = effective_workers(self.settings, cpus)
        # Workers take CPUs round robin; with no explicit list the first CPU is left to the supervisor.
        offset = 0 if self.settings.cpus or len(cpus) < 2 else 1
        self._slots = [_Slot(i, cpus[(i + offset) % len(cpus)]) for i in range(count)]
        spawn.configure(self.settings)  # the workers' environment and sandbox
        if self.settings.start_method == "forkserver":
            # Workers then fork from a server that already imported numpy and the runtime.
            # pool_forkserver keeps the server alive through a process-group SIGTERM: it reaps the workers.
            multiprocessing.get_context("forkserver").set_forkserver_preload(
                ["framepool.worker.main", "framepool.pool.forkserver"]
            )
        outcomes = await asyncio.gather(*(self._boot(slot) for slot in self._slots), return_exceptions=True)
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if errors:
            await self._stop_workers()
            raise next((e for e in errors if isinstance(e, PoolHaltedError)), errors[0])
        self._spawn(self._heartbeat())
        log.info("worker pool ready", extra={"workers": count, "cpus": [s.cpu for s in self._slots]})

    async def _boot(self, slot: _Slot, delay: float = 0.0) -> WorkerProcess:
        """Start a worker in `slot` until one is ready; raises PoolError or PoolHaltedError."""
        failures = 0
        while True:
            if delay:
                await asyncio.sleep(delay)
            worker = WorkerProcess(slot.index, slot.cpu, self.settings, self._worker_exited)
            slot.worker = worker
            await worker.spawn()
            if await self._await_ready(worker):
                slot.ready_at = time.monotonic()
                self._any_ready.set()
                return worker
            worker.close()
            failures += 1
            if worker.exitcode in FATAL_AT_BOOT:  # another incarnation would fail the same way
                raise PoolHaltedError(f"worker {slot.index} failed to start: {_boot_failure(worker)}")
            if failures >= self.settings.crash_loop_limit:
                raise CrashLoopError(
                    f"worker {slot.index} died {failures} times in a row before becoming ready "
                    f"(last: {describe_exit(worker.exitcode)}); halting instead of respawning"
                )
            delay = self._backoff(failures)
            exit_text = describe_exit(worker.exitcode)
            log.warning("worker %d died at start with %s; retrying in %.2f s", slot.index, exit_text, delay)

    async def _await_ready(self, worker: WorkerProcess) -> bool:
        timeout = self.settings.prewarm_timeout
        try:
            await asyncio.wait_for(asyncio.shield(worker.ready), timeout)
            return True
        except TimeoutError:
            worker.kill()
            await worker.exited.wait()
            worker.close()
            what = f"the prewarm hook {self.settings.prewarm!r}" if self.settings.prewarm else "start-up"
            raise PoolError(
                f"worker {worker.slot}: {what} did not finish within prewarm_timeout = {timeout:g} s; the "
                "worker was killed"
            ) from None
        except ChannelError:
            await worker.exited.wait()
            return False

    def _backoff(self, streak: int) -> float:
        settings = self.settings
        return float(min(settings.restart_backoff * 2 ** max(0, streak - 1), settings.restart_backoff_max))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coroutine)

    # -- streams --------------------------------------------------------------------------------------

    async def attach(self, spec: StreamSpec, sink: StreamSink) -> StreamAttachment:
        """Host a stream on the least-loaded ready worker."""
        if self._closing:
            raise PoolError("the worker pool is closed")
        media_kind(spec.kind)  # ProcessorError for a kind that cannot be attached (yet)
        fmt = input_format_of(spec.processors)
        if kind_of(fmt).name != spec.kind:
            raise ProcessorError(f"stream {spec.stream_id!r} is {spec.kind} but its processors take {fmt}")
        if spec.max_frame_bytes <= 0:
            raise ProcessorError(f"stream {spec.stream_id!r}: max_frame_bytes must be positive")
        if not self._slots:
            raise PoolError("the worker pool is not started: await pool.start() first")
        worker = await self._ready_worker()
        slots = ring_slots(self.settings, fmt)
        attachment = StreamAttachment(spec, sink, slots, self._detached, self.timings)
        self._streams.add(attachment)
        try:
            await attachment.open(worker, gap=False)
        except BaseException:
            self._streams.discard(attachment)
            raise
        return attachment

    def _detached(self, attachment: StreamAttachment) -> None:
        self._streams.discard(attachment)
        self._retired.add(attachment.spec.kind, attachment.stats())

    def streams(self) -> list[StreamAttachment]:
        return list(self._streams)

    def stream_totals(self, live: Sequence[tuple[str, StreamStats]] = ()) -> StreamTotals:
        """Every stream's counters summed per kind, detached streams' included: they never decrease (`live`:
        the attached streams' (kind, stats), when the caller has them)."""
        return self._retired.plus(list(live) or [(s.spec.kind, s.stats()) for s in self._streams])

    async def probe(self, specs: list[ProcessorSpec]) -> dict[str, str]:
        """Construct each processor once in a worker (never here): spec text → why it could not start."""
        for _ in range(2):  # a worker may die meanwhile: ask its replacement once
            worker = await self._ready_worker()
            token = next(worker.tokens)
            message = control.ProbeProcessors(token=token, processors=specs)
            try:
                reply = await worker.request(message, "probe", token, within=self.settings.prewarm_timeout)
            except TimeoutError:
                reason = f"did not start within prewarm_timeout = {self.settings.prewarm_timeout:g} s"
                return {str(spec): reason for spec in specs}
            if isinstance(reply, control.ProcessorsProbed):
                return reply.failures
        return {str(spec): "the worker died while constructing it" for spec in specs}

    async def _ready_worker(self) -> WorkerProcess:
        while True:
            if self.halted.is_set():
                raise PoolError(f"the worker pool halted: {self.halt_reason}")
            ready = [
                s.worker for s in self._slots if s.worker is not None and s.worker.state is WorkerState.READY
            ]
            choice = least_loaded(ready)
            if choice is not None:
                return choice
            # Every worker is being replaced: wait for one (bounded by its own start-up timeout).
            self._any_ready.clear()
            await first_of({"ready": self._any_ready.wait(), "halted": self.halted.wait()})

    # -- failures ---------------------------------------------------------------------------------------

    def _worker_exited(self, worker: WorkerProcess) -> None:
        """Sentinel callback for every incarnation; replaces workers that died while serving."""
        slot = self._slots[worker.slot]
        slot.cpu_retired += worker.cpu_time()
        if self._closing or not worker.became_ready or worker.stopping_requested:
            return  # start-up failures are handled by _boot, shutdown by aclose
        reason = f"worker {worker.slot} (pid {worker.pid}) exited with {worker.exit_report()}"
        blame = blame_of(worker)
        blamed = worker.attachments.get(blame.stream) if blame is not None else None
        if blame is not None and blamed is not None:
            note = blamed.incident(blame.processor, blame.reason, self.settings.quarantine_incidents)
            reason += note
            blamed = blamed if note else None  # a processor the stream does not have: nobody is blamed
        if worker.killed_for is HealthAction.KILL_MEMORY:
            slot.memory_restarts += 1
            log.warning(
                "%s; restarting it (memory restart %d of this worker)",
                reason,
                slot.memory_restarts,
                extra={"worker": worker.slot},
            )
        else:
            log.error("%s; restarting it", reason, extra={"worker": worker.slot})
        orphans = list(worker.attachments.values())
        for attachment in orphans:
            attachment.worker_lost(worker, keep_rings=blamed is not None and attachment is not blamed)
        worker.attachments.clear()
        worker.close()
        uptime = time.monotonic() - slot.ready_at
        # A death blamed on a processor is bounded by quarantine, not by backoff: replace the worker at once.
        fresh = uptime > self.settings.restart_backoff_max or blamed is not None
        slot.crash_streak = 1 if fresh else slot.crash_streak + 1
        slot.restarts += 1
        slot.restart_reasons[restart_reason(worker)] += 1
        slot.protocol_restarts += worker.broke_protocol
        self._spawn(self._replace(slot, orphans, reason, immediate=blamed is not None))

    async def _replace(
        self, slot: _Slot, orphans: list[StreamAttachment], reason: str, immediate: bool = False
    ) -> None:
        try:
            worker = await self._boot(slot, delay=0.0 if immediate else self._backoff(slot.crash_streak))
        except PoolError as exc:
            self._halt(str(exc))
            for attachment in orphans:
                attachment.fail(self.halt_reason)
            return
        for attachment in orphans:
            if attachment.detaching:
                continue
            lost = attachment.stats().lost
            try:
                await attachment.open(worker, gap=True)
            except ProcessorError as exc:
                attachment.fail(str(exc))
                continue
            attachment.restarted(
                f"{reason}; re-attached to pid {worker.pid}; {lost} frames lost so far; processor state reset"
            )

    def _halt(self, reason: str) -> None:
        if not self.halted.is_set():
            self.halt_reason = reason
            log.critical("worker pool halted: %s", reason)
            self.halted.set()

    # -- health -----------------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Every ping_interval: measure each ready worker's PSS (off the loop), act on its check_health."""
        while True:
            await asyncio.sleep(self.settings.ping_interval)
            workers = self._ready_workers()
            sizes = await asyncio.to_thread(liveness.pss_of, [w.pid for w in workers])
            now = time.monotonic()
            self._pings += 1
            for worker, pss in zip(workers, sizes, strict=True):
                worker.pss = pss
                self._act(worker, worker.check_health(now), now)
            self._beat.set_result(self._pings)
            self._beat = asyncio.get_running_loop().create_future()

    def _act(self, worker: WorkerProcess, action: HealthAction, now: float) -> None:
        who = f"worker {worker.slot} (pid {worker.pid})"
        silent = now - worker.last_pong
        warn, limit = self.settings.worker_memory_warn_mb, self.settings.worker_memory_limit_mb
        match action:
            case HealthAction.PING | HealthAction.WARN_MEMORY:
                if action is HealthAction.WARN_MEMORY:
                    log.warning("%s uses %d MiB (warning at %d MiB)", who, worker.pss >> 20, warn)
                worker.ping(self._pings)
            case HealthAction.DUMP_STACK:
                log.error(
                    "%s silent for %.1f s (ping_timeout); its stack follows (SIGUSR1), killed at the next "
                    "heartbeat unless it answers",
                    who,
                    silent,
                )
                worker.dump_stack()
            case HealthAction.KILL_HUNG:
                log.error("%s still silent after %.1f s; killing it", who, silent)
                worker.kill(f"silent for {silent:.1f} s", action)
            case HealthAction.KILL_OVER_BUDGET:
                assert worker.overrun is not None
                took = now - worker.overrun.started
                log.error(
                    "%s: a processor call is %.1f s old, past its hard limit; its stack follows (SIGUSR1), "
                    "then it is killed",
                    who,
                    took,
                )
                worker.dump_stack()  # where the call is stuck; faulthandler writes it within milliseconds
                reason = f"a processor call ran {took:.1f} s, past its hard limit"
                asyncio.get_running_loop().call_later(STACK_DUMP_GRACE, worker.kill, reason, action)
            case HealthAction.KILL_MEMORY:
                log.error("%s uses %d MiB (limit %d MiB); restarting it", who, worker.pss >> 20, limit)
                worker.kill(f"{worker.pss >> 20} MiB over worker_memory_limit_mb = {limit}", action)
            case HealthAction.NONE:
                pass

    def _ready_workers(self) -> list[WorkerProcess]:
        return [s.worker for s in self._slots if s.worker is not None and s.worker.state is WorkerState.READY]

    async def next_heartbeat(self) -> int:
        """Once the next heartbeat (pings sent, memory checked) is over, its number; PoolError if closed."""
        return await asyncio.shield(self._beat)

    def load(self) -> float:
        """The busiest worker's CPU fraction (EWMA), 0..1."""
        return max((s.worker.load for s in self._slots if s.worker is not None), default=0.0)

    def stats(self) -> PoolStats:
        workers = [
            WorkerStats(
                slot=s.index,
                pid=s.worker.pid if s.worker else 0,
                cpu=s.cpu,
                state=s.worker.state.value if s.worker else "none",
                streams=s.worker.stream_count if s.worker else 0,
                load=s.worker.load if s.worker else 0.0,
                restarts=s.restarts,
                memory_restarts=s.memory_restarts,
                protocol_restarts=s.protocol_restarts,
                pss_bytes=s.worker.pss if s.worker else 0,
                cpu_seconds=s.cpu_seconds(),
                restart_reasons=dict(s.restart_reasons),
                exitcode=s.worker.exitcode if s.worker else None,
            )
            for s in self._slots
        ]
        return PoolStats(
            workers=workers,
            streams=len(self._streams),
            restarts=sum(s.restarts for s in self._slots),
            load=self.load(),
            halted=self.halted.is_set(),
        )

    def worker_pids(self) -> list[int]:
        """Pids of the current incarnations (for operators and tests)."""
        return [s.worker.pid for s in self._slots if s.worker is not None and s.worker.pid]

    # -- shutdown ---------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Detach every stream, then take each worker down the shutdown ladder. Idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            # A cancelled restart may own a half-started worker: let it finish handing it over to its slot.
            await self._tasks.aclose()
            if not self._beat.done():
                self._beat.set_exception(PoolError("the worker pool is closed"))
                self._beat.exception()  # retrieved: nobody may be waiting
            streams = list(self._streams)
            if streams:
                log.info("pool shutdown: detaching %d streams", len(streams))
                detaching = asyncio.gather(*(s.detach() for s in streams), return_exceptions=True)
                try:
                    await asyncio.wait_for(detaching, self.settings.worker_shutdown_timeout)
                except TimeoutError:
                    log.warning(
                        "pool shutdown: streams did not detach within %.1f s",
                        self.settings.worker_shutdown_timeout,
                    )
            await self._stop_workers()
            for stream in list(self._streams):  # those whose worker never answered the detach
                stream.abandon("the pool closed before the stream's worker detached it")
        finally:
            self._closed.set()

    async def _stop_workers(self) -> None:
        workers = [s.worker for s in self._slots if s.worker is not None]
        log.info("pool shutdown: stopping %d workers", len(workers))
        await asyncio.gather(*(w.stop(self.settings.worker_shutdown_timeout) for w in workers))
        for worker in workers:
            worker.close()


def _boot_failure(worker: WorkerProcess) -> str:
    """Why a worker could not start, in the worker's own words when it gave them (WorkerFailed)."""
    if worker.exitcode == WorkerExit.BAD_START:
        return f"it could not use its start message ({describe_exit(worker.exitcode)}; a framepool bug)"
    return worker.failure or describe_exit(worker.exitcode)


def raise_fd_limit() -> None:
    """Lift the soft open-file limit to the hard one: every stream holds ring fds on both sides."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
