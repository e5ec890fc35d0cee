"""One worker process as the supervisor sees it: process, control channel, rings, state (supervisor process).

A `WorkerProcess` is one incarnation: spawned, handshaken, serving, then stopped or dead. The pool
replaces a dead incarnation with a new one in the same `slot` (same CPU). States, each with its own
timer: starting (spawn + prewarm, bounded by prewarm_timeout) → ready (ping/pong, bounded by
ping_timeout) → stopping (Shutdown → ShutdownAck → exit → SIGKILL, each rung bounded by
worker_shutdown_timeout) → exited. "Exited" means reaped, not merely dying (else a supervisor that
returned would leave it to init). Two events on the loop decide it, never polling: the pidfd (readable once
the process is dead) and the sentinel (spawn: the child's pipe end closed; forkserver: the server reaped
the worker and wrote its status); then a non-blocking reap, and `pidfd_send_signal(0)` failing with ESRCH
proves the pid is gone. Only when the forkserver itself died does init reap a worker, with no event: then a
bounded re-check. Every request has a deadline (attach, probe: prewarm_timeout; drain, detach: ping_timeout
unless the stream moved meanwhile); a worker that misses it is killed.

Health is a method of the worker: `check_health(now)` turns what the worker last said (its pong), what it
is doing (its activity page: a processor call past its hard limit is cut off) and what it weighs (PSS,
measured by the pool off the loop) into one `HealthAction` for the pool's heartbeat. A worker silent past
`ping_timeout` gets SIGUSR1 (faulthandler logs every thread's stack), then SIGKILL one heartbeat later if
still silent: the operator sees where it hung, and one only slow that answers in between is spared.

The supervisor owns every memfd; results are drained a ring's worth per loop turn, every slot validated by
`framepool.ipc.slots`. A malformed slot, a corrupt ring, a pong that answers no ping or a message flood is
the worker breaking the protocol: it is killed (and, like any death, restarted).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from framepool.errors import ChannelError
from framepool.ipc import control
from framepool.ipc.activity import ActivityPage, Call
from framepool.ipc.control import ControlChannel
from framepool.ipc.lifecycle import describe_exit
from framepool.ipc.ring import POLICY_BLOCK, Doorbell, FrameRing, RingError
from framepool.ipc.slots import SlotError, result_slot_bytes, result_stream
from framepool.pool import ladder, liveness
from framepool.pool.blobring import blob_ring
from framepool.pool.liveness import HealthAction
from framepool.pool.placement import LoadEstimate
from framepool.pool.quarantine import call_budget
from framepool.pool.spawn import forget, start_process
from framepool.ratelimit import TokenBucket
from framepool.settings import Settings
from framepool.tasks import while_moving

if TYPE_CHECKING:
    from framepool.pool.stream import StreamAttachment

log = logging.getLogger("framepool.pool")
RECHECK_FIRST, RECHECK_MAX = 0.001, 0.1  # seconds between checks for a worker only init can reap


class WorkerState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    EXITED = "exited"


class WorkerProcess:
    """One incarnation of the worker in `slot`; created by the pool, driven by its callbacks."""

    def __init__(
        self, slot: int, cpu: int | None, settings: Settings, on_exit: Callable[[WorkerProcess], None]
    ) -> None:
        self.slot = slot
        self.cpu = cpu
        self.settings = settings
        self.state = WorkerState.STARTING
        self.pid = 0
        self.exitcode: int | None = None
        self.failure = ""  # WorkerFailed reason, if the worker reported one
        self.became_ready = False
        self.stopping_requested = False  # its exit is expected: no restart
        self.load_estimate = LoadEstimate()
        self.pss, self.cpu_seconds = 0, 0.0  # cpu_seconds: the kernel's count at the last reading (cpu_time)
        self.memory_warned = False
        self.stack_dumped = False  # SIGUSR1 sent for the current silence
        self.killed_for: HealthAction | None = None  # why the supervisor killed it, if it did
        self.kill_reason = ""
        self.broke_protocol = False  # it wrote a malformed slot: killed, its rings no longer read
        self.ready = asyncio.get_running_loop().create_future()  # resolves at WorkerReady
        self.acked = asyncio.Event()
        self.exited = asyncio.Event()
        self.last_pong = time.monotonic()
        self.pings = liveness.PingBook()
        self.message_rate = TokenBucket(liveness.CONTROL_RATE)
        self.attachments: dict[int, StreamAttachment] = {}
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        self.indexes = itertools.count(1)  # of the streams it hosts (AttachStream.index)
        self.tokens = itertools.count(1)  # of drain and probe requests
        self._pings = itertools.count(1)
        self._replies: dict[tuple[str, int], asyncio.Future[control.Message]] = {}  # awaited
        self._asked: set[tuple[str, int]] = set()  # sent and not answered yet, awaited or not
        self._process: BaseProcess | None = None
        self._pidfd = -1
        self._dead = False  # the pidfd fired: the process is gone or a zombie
        self._sentinel_fired = False
        self._recheck_delay = RECHECK_FIRST
        self._recheck_handle: asyncio.TimerHandle | None = None
        self._channel: ControlChannel | None = None
        self._create_rings(settings)
        self.overrun: Call | None = None  # the call cut off by KILL_OVER_BUDGET
        self._rings_closed = False
        self._drain_next_turn: asyncio.Handle | None = None

    def _create_rings(self, settings: Settings) -> None:
        self.data_bell = Doorbell.create()
        self.result_bell = Doorbell.create()
        self.space_bell = Doorbell.create()
        slot_size = result_slot_bytes(settings.result_max_bytes)
        self.results = FrameRing.create(settings.result_ring_slots, slot_size, POLICY_BLOCK)
        self.results.bind(None, self.space_bell)
        self.blobs = blob_ring(settings.bytes_ring_slots, settings.bytes_max, self.space_bell)  # send_bytes
        self.activity = ActivityPage.create()  # readable after the worker is gone: whom to blame

    @property
    def load(self) -> float:
        return self.load_estimate.value

    @property
    def stream_count(self) -> int:
        return len(self.attachments)

    async def spawn(self) -> None:
        """Start the process and send its configuration; WorkerReady resolves `self.ready`."""
        supervisor_end, worker_end = control.channel_pair()
        starting = asyncio.ensure_future(
            asyncio.to_thread(start_process, self.settings.start_method, worker_end, self.slot)
        )
        starting.add_done_callback(lambda _: worker_end.close())
        try:
            process, self.pid, pidfd = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The thread starts the process anyway: adopt it and kill it, so the ladder can reap it.
            with contextlib.suppress(BaseException):
                process, self.pid, pidfd = await starting
                self._adopt(process, pidfd, supervisor_end)
                self.kill()
            raise
        self._adopt(process, pidfd, supervisor_end)
        self.result_bell.prepare_sleep()
        self._loop.add_reader(self.result_bell.fileno(), self._on_result_bell)
        start = control.WorkerStart(
            index=self.slot,
            cpu=self.cpu,
            prewarm=self.settings.prewarm,
            processor_failure_limit=self.settings.processor_failure_limit,
            result_max_bytes=self.settings.result_max_bytes,
            bytes_max=self.settings.bytes_max if self.blobs is not None else 0,
            budget=call_budget(self.settings),
        )
        bells = (self.data_bell, self.result_bell, self.space_bell)
        fds = [fd for bell in bells for fd in (bell.event_fd, bell.page_fd)]
        blob_fd = [self.blobs.fd] if self.blobs is not None else []
        self.send(start, [*fds, self.results.fd, self.activity.fd, *blob_fd])

    def _adopt(self, process: BaseProcess, pidfd: int, supervisor_end: socket.socket) -> None:
        self._process, self._pidfd = process, pidfd
        self._channel = ControlChannel(supervisor_end, self._on_message, self._on_channel_error)
        self._loop.add_reader(process.sentinel, self._on_sentinel)
        if pidfd >= 0:
            self._loop.add_reader(pidfd, self._on_dead)
        else:  # it died and was reaped before its pidfd could be opened
            self._dead = True

    def send(self, message: control.Message, fds: list[int] | None = None) -> None:
        if self._channel is None or self._channel.closed:
            return  # the worker is gone; its exit handler takes care of what was pending
        try:
            self._channel.send(message, fds or [])
        except ChannelError as exc:
            self._on_channel_error(exc)

    async def request(
        self,
        message: control.Message,
        kind: str,
        key: int,
        fds: list[int] | None = None,
        *,
        within: float = 0,
        progress: Callable[[], bool] | None = None,
    ) -> control.Message | None:
        """Send and wait for the reply identified by (kind, key); None if the worker exits first. With
        `within` (s), a worker that has not answered by then is killed (TimeoutError), unless `progress`
        says the work the request waits for moved since the last look: then it gets another `within`."""
        future: asyncio.Future[control.Message] = self._loop.create_future()
        self._replies[(kind, key)] = future
        self._asked.add((kind, key))
        self.send(message, fds)
        if self.state is WorkerState.EXITED:
            future.cancel()
        try:
            if within:
                return await while_moving(future, within, progress)
            return await future
        except TimeoutError:
            self.kill(f"no answer to its {kind} request within {within:g} s", HealthAction.KILL_HUNG)
            raise
        except asyncio.CancelledError:
            if future.cancelled() and self.state is WorkerState.EXITED:
                return None
            raise
        finally:
            self._replies.pop((kind, key), None)

    # -- events from the loop ----------------------------------------------------------------------------

    def _on_message(self, message: control.Message, fds: list[int]) -> None:
        control.close_fds(fds)  # workers never send fds; do not leak any that arrive
        if self.broke_protocol:
            return  # being killed: nothing more it says counts
        if not self.message_rate.allow():
            self._violated(f"control messages faster than {liveness.CONTROL_RATE:g} per second")
            return
        match message:
            case control.WorkerReady(pid=pid):
                self.state = WorkerState.READY
                self.became_ready = True
                self.last_pong = time.monotonic()
                if not self.ready.done():
                    self.ready.set_result(pid)
            case control.WorkerFailed(reason=reason):
                self.failure = reason
            case control.Pong(seq=seq, busy=busy):
                if not self.pings.answered(seq):
                    self._violated(f"a pong (seq {seq}) that answers no ping")
                    return
                self.last_pong = now = time.monotonic()
                self.load_estimate.update(now, self.cpu_time())
                for index, seconds in busy.items():
                    attachment = self.attachments.get(index)
                    if attachment is not None:
                        attachment.busy_reported(seconds)
            case control.StreamEvent(index=index):
                attachment = self.attachments.get(index)
                if attachment is not None:
                    attachment.processor_event(message)
            case control.ShutdownAck():
                self.acked.set()
            case control.StreamAttached(index=key) | control.StreamAttachFailed(index=key):
                self._reply("attach", key, message)
            case control.StreamDetached(index=key):
                self._reply("detach", key, message, drain=True)
            case control.StreamDrained(token=key):
                self._reply("drain", key, message, drain=True)
            case control.ProcessorsProbed(token=key):
                self._reply("probe", key, message)
            case _:
                self._violated(f"a {type(message).__name__} message, which only the supervisor sends")

    def _reply(self, kind: str, key: int, message: control.Message, drain: bool = False) -> None:
        """A reply: to a request sent (its requester may have given up since), or a protocol violation. With
        `drain`, the results the worker wrote before replying are delivered first."""
        if (kind, key) not in self._asked:
            self._violated(f"a {type(message).__name__} that answers no request")
            return
        self._asked.discard((kind, key))
        if drain:
            self.drain_results()
        future = self._replies.get((kind, key))
        if future is not None and not future.done():
            future.set_result(message)

    def _on_channel_error(self, error: ChannelError) -> None:
        # Closed: the worker exits (sentinel follows) or, alive, stops answering pings; stopping: the ladder.
        if isinstance(error, control.ChannelClosed):
            return
        if self.state in (WorkerState.STARTING, WorkerState.READY):
            log.warning("worker %d (pid %d): %s; killing it", self.slot, self.pid, error)
            self.kill()

    def _on_sentinel(self) -> None:
        assert self._process is not None
        self._loop.remove_reader(self._process.sentinel)
        self._sentinel_fired = True
        self._check_reaped()

    def _on_dead(self) -> None:
        self._loop.remove_reader(self._pidfd)
        self._dead = True
        self._check_reaped()

    def _check_reaped(self) -> None:
        """Reap without blocking if the process is dead; `_exited` once its pid is gone."""
        if not self._dead or self.state is WorkerState.EXITED or self._process is None:
            return
        if self.settings.start_method == "forkserver" and not self._sentinel_fired:
            return  # the server's status report (or its death) comes through the sentinel, after its waitpid
        # Non-blocking either way: waitpid(WNOHANG) under spawn; under forkserver, the server's status report
        # once it is readable (the sentinel fires when the server has reaped the worker).
        self.exitcode = self._process.exitcode
        if not self._pid_gone():
            with contextlib.suppress(ChildProcessError):  # ours to reap only if it was re-parented to us
                status = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
                if status is not None:
                    killed = status.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
                    self.exitcode = -status.si_status if killed else status.si_status
        if self._pid_gone():
            self._exited()
        elif self._sentinel_fired and self._recheck_handle is None:
            # Its reaper (the forkserver) is gone and init has it: the kernel tells nobody else when that
            # happens.
            self.exitcode = None  # multiprocessing reads the server's death as 255; the real status: init's
            log.warning(
                "worker %d (pid %d): its forkserver died; waiting for init to reap it", self.slot, self.pid
            )
            self._recheck()

    def _recheck(self) -> None:
        self._recheck_handle = None
        if self._pid_gone():
            self._exited()
            return
        self._recheck_handle = self._loop.call_later(self._recheck_delay, self._recheck)
        self._recheck_delay = min(self._recheck_delay * 2, RECHECK_MAX)

    def _pid_gone(self) -> bool:
        if self._pidfd < 0:
            return True
        try:
            signal.pidfd_send_signal(self._pidfd, 0)
        except ProcessLookupError:
            return True
        return False

    def _exited(self) -> None:
        assert self._process is not None
        if self.exitcode is None:
            self.exitcode = self._process.exitcode
        forget(self._process)
        self._loop.remove_reader(self._process.sentinel)  # spawn: a grandchild may hold the pipe open
        self.drain_results()  # never raises: whatever the worker left in its rings, the exit is handled
        self.state = WorkerState.EXITED
        if not self.ready.done():
            self.ready.set_exception(
                ChannelError(f"worker exited with {describe_exit(self.exitcode)} before it was ready")
            )
            self.ready.exception()  # retrieved here: the pool reads exitcode, not the future
        for future in self._replies.values():
            future.cancel()
        self.exited.set()
        self._on_exit(self)

    def _on_result_bell(self, scheduled: bool = False) -> None:
        if self._rings_closed or (self._drain_next_turn and not scheduled):
            return  # or a second drain chain per turn would start each time the worker rings (it may at will)
        self._drain_next_turn = None
        self.result_bell.clear()
        budget = self.settings.result_ring_slots
        while not self.broke_protocol:
            budget -= self.drain_results(budget)
            self.result_bell.prepare_sleep()
            rings = (self.results.pending(), self.blobs is not None and self.blobs.pending())
            if not (any(rings) or any(a.output_pending() for a in self.attachments.values())):
                return
            self.result_bell.cancel_sleep()
            if budget <= 0:  # let the rest of the loop run, finish next turn (the bell is not re-armed)
                self._drain_next_turn = self._loop.call_soon(self._on_result_bell, True)
                return

    def drain_results(self, budget: int | None = None) -> int:
        """Hand every result and output frame waiting in this worker's rings to the sinks. A malformed slot
        (SlotError) is the worker breaking the protocol: nothing of it reaches a sink, the worker is killed
        (the pool restarts it) and its rings are not read again."""
        if self.broke_protocol:
            return 0
        try:
            return self._drain(budget)
        except (SlotError, RingError) as exc:  # a malformed slot, or ring state the worker corrupted
            self._violated(str(exc))
            return 0

    def _violated(self, what: str) -> None:
        """The worker broke the protocol: killed (the pool restarts it), its rings not read again."""
        self.broke_protocol = True
        log.error("worker %d (pid %d) sent %s; killing it", self.slot, self.pid, what)
        self.kill(f"it broke the protocol: {what}")

    def ping(self, seq: int) -> None:
        self.pings.sent(seq)
        self.send(control.Ping(seq=seq))

    def _drain(self, budget: int | None) -> int:
        count = 0
        ring = self.results
        budget = self.settings.result_ring_slots if budget is None else budget  # detach, exit: one ring
        while count < budget and (item := ring.peek()) is not None:
            header, view = item
            del item
            try:
                attachment = self.attachments.get(result_stream(header))
                if attachment is not None:  # None: a stream detached meanwhile
                    attachment.deliver_result(header, view)
            finally:
                view.release()  # even when raising: the ring closes later and must have no view left
            ring.release()
            count += 1
        count += self.blobs.drain(self.attachments) if self.blobs is not None else 0
        for attachment in list(self.attachments.values()):
            count += attachment.drain_output()  # at most its ring's slots
        return count

    def check_health(self, now: float) -> HealthAction:
        """This worker's health at monotonic `now` (its last pong, its PSS as last measured): one action."""
        if self.state is not WorkerState.READY:
            return HealthAction.NONE
        settings = self.settings
        call = self.activity.read()
        if call is not None and now > call.deadline and call != self.overrun:  # once per call
            self.overrun = call
            return HealthAction.KILL_OVER_BUDGET
        if now - self.last_pong > settings.ping_timeout:
            if self.stack_dumped:
                return HealthAction.KILL_HUNG
            self.stack_dumped = True
            return HealthAction.DUMP_STACK
        self.stack_dumped = False  # it answered since: only slow, and spared
        action, self.memory_warned = liveness.memory_action(
            self.pss,
            self.memory_warned,
            settings.worker_memory_warn_mb << 20,
            settings.worker_memory_limit_mb << 20,
        )
        return action

    def cpu_time(self) -> float:
        """CPU seconds the kernel charged it: read until its pidfd fires (the pid is its own), then kept."""
        cpu = None if self._dead or not self.pid else liveness.kernel_cpu_seconds(self.pid)
        self.cpu_seconds = max(self.cpu_seconds, cpu or 0.0)
        return self.cpu_seconds

    def dump_stack(self) -> None:
        """SIGUSR1: the worker's faulthandler writes every thread's stack to its stderr, the log."""
        self._signal(signal.SIGUSR1)

    # -- stop ----------------------------------------------------------------------------------------

    def kill(self, reason: str = "", killed_for: HealthAction | None = None) -> None:
        """SIGKILL; `reason` and `killed_for` say why when the health policy decided it (exit report)."""
        if reason and not self.kill_reason:
            self.kill_reason, self.killed_for = reason, killed_for
        self._signal(signal.SIGKILL)

    def _signal(self, signum: signal.Signals) -> None:
        # Through the pidfd, not the pid: a pid reaped by the forkserver meanwhile may already be reused.
        if self._pidfd >= 0 and self.state is not WorkerState.EXITED:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signum)

    def exit_report(self) -> str:
        """How this incarnation ended, for logs: `exit code 64 (RUNTIME_ERROR)`, `signal 9 (killed: ...)`."""
        text = describe_exit(self.exitcode)
        return f"{text} (killed: {self.kill_reason})" if self.kill_reason else text

    async def stop(self, grace: float) -> None:
        """The shutdown ladder (`framepool.pool.ladder`): when this returns the pid is gone (or, if even
        SIGKILL did not end it within `grace`, an error was logged)."""
        if self.state is not WorkerState.EXITED:
            self.state, self.stopping_requested = WorkerState.STOPPING, True
            await ladder.climb(self, grace)

    def close(self) -> None:
        """Release the supervisor's side of everything (after exit)."""
        if self._channel is not None:
            self._channel.close()
        if self._recheck_handle is not None:
            self._recheck_handle.cancel()
            self._recheck_handle = None
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        if self._process is not None:
            self._loop.remove_reader(self._process.sentinel)
        if not self._rings_closed:
            self._loop.remove_reader(self.result_bell.fileno())
            for bell in (self.data_bell, self.result_bell, self.space_bell):
                bell.close()
            self.results.close()
            if self.blobs is not None:
                self.blobs.close()
            self.activity.close()
            self._rings_closed = True
