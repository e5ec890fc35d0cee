"""The processor worker process: start-up, the main loop, and the control messages it answers (worker
process).

A worker is started by `framepool.pool` (multiprocessing, forkserver or spawn) with its end of the control
channel and a `WorkerLaunch` (its environment, whether to sandbox itself). Everything else arrives in the
typed `WorkerStart` message, never through the environment. Start-up order: replace the environment with
the allow-listed one and drop multiprocessing's record of the supervisor's pid, sandbox itself if asked
(`framepool.worker.sandbox`: the user switch clears the parent-death signal, so it comes first), die with
the supervisor (PR_SET_PDEATHSIG, then check that the parent did not die before that took effect), read
WorkerStart, pin to the CPU, map the rings, run the prewarm hook, announce WorkerReady.

The main loop drains every input ring that has frames (a batch per wake-up), answers control messages
between batches, and sleeps on its one data doorbell plus the control socket with `poll`: prepare_sleep,
re-check every ring, then block. Nothing spins: this machine has two cores and one belongs to the
supervisor.

Exit codes are a contract with the pool (`framepool.ipc.lifecycle.WorkerExit`), and `main` is the one
place the worker exits: every way out of `run` returns a WorkerExit. SIGUSR1 dumps every thread's stack
to stderr (faulthandler, so it works even while a processor holds the interpreter in C code): the pool
sends it to a worker that stopped answering pings before it kills it, and the operator sees where it hung.
"""

from __future__ import annotations

import ctypes
import faulthandler
import importlib
import logging
import multiprocessing
import multiprocessing.process
import os
import resource
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable

from framepool.errors import ChannelError
from framepool.ipc import control
from framepool.ipc.activity import ActivityPage
from framepool.ipc.control import WorkerChannel
from framepool.ipc.lifecycle import WorkerExit, WorkerLaunch
from framepool.ipc.ring import Doorbell, FrameRing, RingError
from framepool.logs import log_context, setup_logging
from framepool.proctitle import worker_title
from framepool.worker import sandbox
from framepool.worker.context import ResultWriter
from framepool.worker.drain import EndOfDrain
from framepool.worker.hosting import CallWatch, HostedStream, probe, release_resources, stream_log_fields

# Streams whose busy seconds one pong carries at most (about 20 bytes each per processor, far below the
# channel's
# message limit); the others wait for the next pong, oldest first.
BUSY_PER_PONG = 4096
# Longest a pass over the rings runs before control messages are answered again: a backlog of slow frames
# must not look like a hung worker (the pool judges liveness by pongs).
PASS_SECONDS = 0.1

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
log = logging.getLogger("framepool.worker")


def main(sock: socket.socket, expected_parent: int, launch: WorkerLaunch) -> None:
    """multiprocessing target (via `framepool.ipc.lifecycle.worker_entry`): the one place a worker exits."""
    setup_logging(launch.log_level, launch.log_format, process="worker")
    try:
        status = _run_worker(sock, expected_parent, launch)
    except Exception:  # before the runtime (which reports its own): logged, not multiprocessing's raw print
        log.exception("worker failed to start")
        status = WorkerExit.RUNTIME_ERROR
    sys.exit(status)


def _run_worker(sock: socket.socket, expected_parent: int, launch: WorkerLaunch) -> WorkerExit:
    apply_launch(launch)
    if launch.sandbox:
        try:
            sandbox.apply(launch.sandbox_user)
        except sandbox.SandboxError as exc:
            return _sandbox_failed(WorkerChannel(sock), str(exc))
    else:
        # Forked from the (non-dumpable) forkserver: stay debuggable by the operator, as a spawned worker is.
        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    if not arm_parent_death_signal(expected_parent):
        return WorkerExit.ORPHANED
    # The supervisor decides when a worker stops (its shutdown ladder), not a Ctrl-C or a service manager's
    # SIGTERM reaching the whole process group: streams are detached first so final results are delivered.
    # A supervisor that dies anyway takes its workers along through the parent-death signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    return run(WorkerChannel(sock))


def apply_launch(launch: WorkerLaunch) -> None:
    """The pool's environment (a forked worker holds its forkserver's); no copy of the supervisor's pid,
    which multiprocessing hands a forkserver child (the parent it records is the supervisor)."""
    os.environ.clear()
    os.environ.update(launch.env)
    multiprocessing.current_process()._parent_pid = None  # type: ignore[attr-defined]
    multiprocessing.process._parent_process = None  # type: ignore[attr-defined]


def _sandbox_failed(channel: WorkerChannel, reason: str) -> WorkerExit:
    """Read the start message (so the supervisor's send never meets a closed socket), say why, exit."""
    log.error("%s", reason)
    try:
        _message, fds = channel.receive()
        control.close_fds(fds)
        channel.send(control.WorkerFailed(reason=reason))
    except ChannelError:
        return WorkerExit.CHANNEL_LOST
    return WorkerExit.SANDBOX_FAILED


def arm_parent_death_signal(expected_parent: int) -> bool:
    """SIGKILL this process when its parent dies; False if the parent already died (nobody would signal)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The parent may have died between fork and prctl: then we were re-parented and no signal will come.
    return os.getppid() == expected_parent


class PrewarmFailed(Exception):
    """The prewarm hook failed; the worker already told the supervisor why (WorkerFailed)."""


def run(channel: WorkerChannel) -> WorkerExit:
    try:
        message, fds = channel.receive()
    except ChannelError:
        return WorkerExit.CHANNEL_LOST
    if not isinstance(message, control.WorkerStart) or len(fds) != 8 + (message.bytes_max > 0):
        control.close_fds(fds)
        return WorkerExit.BAD_START
    worker_title(message.index, message.cpu)  # the earliest both are known: `ps` tells workers apart
    with log_context(worker=message.index):
        try:
            runtime = WorkerRuntime.start(channel, message, fds)
        except (RingError, OSError) as exc:
            log.error("worker start failed: %s", exc)
            return WorkerExit.BAD_START
        except PrewarmFailed:
            return WorkerExit.PREWARM_FAILED
        except ChannelError as exc:
            log.warning("control channel lost at start: %s", exc)
            return WorkerExit.CHANNEL_LOST
        try:
            runtime.serve()
            return WorkerExit.CLEAN
        except ChannelError as exc:
            log.warning("control channel lost: %s", exc)
            return WorkerExit.CHANNEL_LOST
        except (Exception, SystemExit):  # SystemExit: a processor called sys.exit(); the worker exits here
            log.exception("worker runtime failed")
            return WorkerExit.RUNTIME_ERROR
        finally:
            runtime.close()


def run_prewarm(hook: str) -> None:
    """Import and call the user's `module:function`; any failure is a RuntimeError with a one-line reason."""
    module_name, sep, attr = hook.partition(":")
    if not sep or not module_name or not attr:
        raise RuntimeError(f"prewarm hook {hook!r} is not module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(f"prewarm hook {hook!r}: cannot import {module_name!r}: {exc}") from None
    function: Callable[[], object] | None = getattr(module, attr, None)
    if not callable(function):
        raise RuntimeError(f"prewarm hook {hook!r}: {attr!r} is not a callable in {module_name!r}")
    try:
        function()
    except Exception as exc:
        raise RuntimeError(f"prewarm hook {hook!r} raised {type(exc).__name__}: {exc}") from None


class WorkerRuntime:
    """One worker's rings, hosted streams and main loop."""

    def __init__(
        self,
        channel: WorkerChannel,
        start: control.WorkerStart,
        bells: list[Doorbell],
        results: FrameRing,
        activity: ActivityPage,
        blobs: FrameRing | None,
    ) -> None:
        self.channel = channel
        self.config = start
        self.data_bell, result_bell, self.space_bell = bells
        for ring in (results, blobs):
            if ring is not None:
                ring.bind(result_bell, None)
        self.writer = ResultWriter(
            results, result_bell, self.space_bell, start.result_max_bytes, blobs, start.bytes_max
        )
        self.writer.wait_space = self._wait_space
        self.watch = CallWatch(activity, start.budget)
        self.batches = EndOfDrain(self.watch, lambda: self.streams.values())
        # Control messages that arrived while a processor waited for space, for the main loop (in order).
        self.deferred: deque[tuple[control.Message, list[int]]] = deque()
        self.streams: dict[int, HostedStream] = {}
        self.busy_changed: dict[
            int, None
        ] = {}  # streams that processed frames since the last pong, oldest first
        self.stopping = False
        self._control_poll = select.poll()
        self._control_poll.register(channel.fileno(), select.POLLIN)
        self._sleep_poll = select.poll()
        self._sleep_poll.register(channel.fileno(), select.POLLIN)
        self._sleep_poll.register(self.data_bell.fileno(), select.POLLIN)
        self._space_poll = select.poll()
        self._space_poll.register(channel.fileno(), select.POLLIN)
        self._space_poll.register(self.space_bell.fileno(), select.POLLIN)

    @classmethod
    def start(cls, channel: WorkerChannel, start: control.WorkerStart, fds: list[int]) -> WorkerRuntime:
        if start.cpu is not None:
            os.sched_setaffinity(0, {start.cpu})
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # each hosted stream holds ring fds
        bells: list[Doorbell] = []
        try:
            for i in range(3):
                bells.append(Doorbell.attach(fds[2 * i], fds[2 * i + 1]))
            results = FrameRing.attach(fds[6])
        except BaseException:
            for bell in bells:
                bell.close()
            control.close_fds(fds[2 * len(bells) :])
            raise
        activity: ActivityPage | None = None
        try:
            activity = ActivityPage.attach(fds[7])
            blobs = FrameRing.attach(fds[8]) if len(fds) > 8 else None
        except BaseException:
            for bell in bells:
                bell.close()
            results.close()
            if activity is not None:
                activity.close()
            control.close_fds(fds[8:])
            raise
        runtime = cls(channel, start, bells, results, activity, blobs)
        if start.prewarm:
            try:
                run_prewarm(start.prewarm)
            except RuntimeError as exc:
                log.error("%s", exc)
                try:
                    channel.send(control.WorkerFailed(reason=str(exc)))
                finally:
                    runtime.close()
                raise PrewarmFailed(str(exc)) from None
        channel.send(control.WorkerReady(pid=os.getpid()))
        log.info("worker ready", extra={"pid": os.getpid(), "cpu": start.cpu})
        return runtime

    # -- main loop ------------------------------------------------------------------------------------

    def serve(self) -> None:
        """Until Shutdown: process what the rings hold, answer control messages, sleep on the doorbell."""
        while not self.stopping:
            worked = self._process_ready()
            if self.deferred or self._control_poll.poll(0):
                self._handle_control()
                continue
            if worked:
                continue
            self.data_bell.prepare_sleep()
            if any(stream.pending() for stream in self.streams.values()):
                self.data_bell.cancel_sleep()
                continue
            self._sleep_poll.poll()
            self.data_bell.clear()

    def _process_ready(self) -> bool:
        worked = False
        until = time.monotonic() + PASS_SECONDS
        for index, stream in list(self.streams.items()):
            if stream.process_pending(until=until):
                worked = True
                self.busy_changed[index] = None
        self.batches.end_pass()
        return worked

    def _busy_report(self) -> dict[int, list[float]]:
        report: dict[int, list[float]] = {}
        while self.busy_changed and len(report) < BUSY_PER_PONG:
            index = next(iter(self.busy_changed))
            del self.busy_changed[index]
            stream = self.streams.get(index)
            if stream is not None:
                report[index] = [processor.busy for processor in stream.processors]
        return report

    def _wait_space(self, timeout: float) -> None:
        """A processor waits for space in a full result or output ring (offline back-pressure): answer pings
        meanwhile, keep every other message for the main loop (it may concern the stream being processed)."""
        events = self._space_poll.poll(int(timeout * 1000))
        if any(fd == self.channel.fileno() for fd, _ in events):
            message, fds = self.channel.receive()
            if isinstance(message, control.Ping):
                self._pong(message.seq)
            else:
                self.deferred.append((message, fds))
        self.space_bell.clear()

    def _pong(self, seq: int) -> None:
        self.channel.send(control.Pong(seq=seq, busy=self._busy_report()))

    def _handle_control(self) -> None:
        message, fds = self.deferred.popleft() if self.deferred else self.channel.receive()
        match message:
            case control.AttachStream():
                self._attach(message, fds)
            case control.DetachStream(index=index):
                self._detach(index)
            case control.DrainStream(index=index, token=token):
                stream = self.streams.get(index)
                busy: dict[str, float] = {}
                errors = 0
                if stream is not None:
                    stream.process_pending(limit=None)
                    self.batches.before_drain(stream)
                    busy, errors = stream.busy(), stream.errors
                self.channel.send(control.StreamDrained(index=index, token=token, errors=errors, busy=busy))
            case control.ProbeProcessors(token=token, processors=specs):
                failures = {str(spec): reason for spec in specs if (reason := probe(spec))}
                self.channel.send(control.ProcessorsProbed(token=token, failures=failures))
            case control.Ping(seq=seq):
                self._pong(seq)
            case control.Shutdown():
                for index in list(self.streams):
                    self._detach(index, reply=False)
                self.channel.send(control.ShutdownAck())
                self.stopping = True
            case _:
                control.close_fds(fds)
                raise ChannelError(f"unexpected control message {type(message).__name__} in a worker")

    def _attach(self, message: control.AttachStream, fds: list[int]) -> None:
        with log_context(**stream_log_fields(message)):  # what processors log as they start
            try:
                stream = HostedStream.open(
                    message,
                    fds,
                    self.data_bell,
                    self.writer,
                    self.channel,
                    self.config,
                    self.watch,
                    self.batches,
                )
            except Exception as exc:  # a processor's constructor may raise anything: report, do not die
                self.channel.send(
                    control.StreamAttachFailed(index=message.index, reason=f"{type(exc).__name__}: {exc}")
                )
                return
            self.streams[message.index] = stream
            self.channel.send(control.StreamAttached(index=message.index))
            stream.report_start_failures()

    def _detach(self, index: int, reply: bool = True) -> None:
        stream = self.streams.pop(index, None)
        if stream is None:
            if reply:
                self.channel.send(control.StreamDetached(index=index, errors=0, busy={}, results_dropped=0))
            return
        with log_context(**stream.log_fields):  # what processors log as they finish
            stream.process_pending(limit=None)
            self.batches.before_drain(stream)
            stream.finish()
        if reply:
            self.channel.send(
                control.StreamDetached(
                    index=index,
                    errors=stream.errors,
                    busy=stream.busy(),
                    results_dropped=stream.results_dropped,
                )
            )
        stream.close()

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()
        self.streams.clear()
        release_resources()
        self.watch.page.close()
        self.writer.close()
        self.data_bell.close()
        self.channel.close()
