"""Jobs: the request a user function answers, the context an entrypoint gets, and the lifecycle (supervisor
process).

A job ends in exactly one of these ways: JobTermination from the server, the room closing or the agent
being removed from it, `ctx.shutdown()`, the entrypoint raising, or the daemon's shutdown. Every way runs
the same ordered cleanup, all of it bounded by one `shutdown_timeout` deadline: detach the streams
(processors' close() runs and their last results arrive), flush the pending results to the room, unpublish the
output tracks, disconnect, then the shutdown callbacks. The status reported is JS_FAILED with the error text
when the entrypoint raised (livekit-agents reports SUCCESS there, which hides broken agents) or a rung failed,
JS_SUCCESS otherwise.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.protocol import agent as agent_pb
from livekit.protocol import models

from framepool.agent.ffi_threads import keep_callback_thread_states
from framepool.agent.intake import Consumer, DataIntake
from framepool.agent.outputs import Output
from framepool.agent.room_outputs import RoomOutputs
from framepool.agent.session import RoomSession, Rule, make_rule
from framepool.logs import log_context
from framepool.processors.registry import ProcessorSpec
from framepool.tasks import TaskSet

if TYPE_CHECKING:
    from framepool.agent.datafeed import DataFeed, DataProcessors
    from framepool.agent.dataplane import JobDataPlane
    from framepool.agent.outputs import DataOutput
    from framepool.dataflow.pipeline import CompiledDataflow
    from framepool.ipc.spool import SpoolWriter
    from framepool.pool import WorkerPool

log = logging.getLogger("framepool.agent.job")

# The share of shutdown_timeout (at most this many seconds, at most a quarter) kept for leaving the room.
DISCONNECT_RESERVE = 1.0

Entrypoint = Callable[["JobContext"], Awaitable[None]]
ParticipantEntrypoint = Callable[["JobContext", rtc.RemoteParticipant], Coroutine[Any, Any, None]]
ShutdownCallback = Callable[[str], Awaitable[None]] | Callable[[], Awaitable[None]]


@dataclass
class JobAnswer:
    available: bool
    terminate: bool = False
    name: str = ""
    identity: str = ""
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


class JobRequest:
    """A job offered to this daemon; the request function answers with `accept` or `reject`."""

    def __init__(self, job: agent_pb.Job, agent_name: str) -> None:
        self.job = job
        self.agent_name = agent_name
        self.answer: JobAnswer | None = None

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def room(self) -> models.Room:
        return self.job.room

    @property
    def publisher(self) -> models.ParticipantInfo | None:
        return self.job.participant if self.job.HasField("participant") else None

    async def accept(
        self, name: str = "", identity: str = "", metadata: str = "", attributes: dict[str, str] | None = None
    ) -> None:
        """Take the job, joining as `identity` (default agent-<job id>)."""
        self._answer(JobAnswer(True, False, name, identity, metadata, dict(attributes or {})))

    async def reject(self, terminate: bool = False) -> None:
        """Decline; `terminate=True` asks the server not to offer the job to any other worker."""
        self._answer(JobAnswer(False, terminate))

    def _answer(self, answer: JobAnswer) -> None:
        if self.answer is not None:
            raise RuntimeError(f"job {self.id} was already answered")
        self.answer = answer


class SharedState:
    """What a per-agent prewarm hook prepares once and every job of that agent shares
    (`ctx.shared.userdata`)."""

    def __init__(self, agent_name: str) -> None:
        self.agent_name = agent_name
        self.userdata: dict[str, Any] = {}


class JobContext:
    """What an entrypoint works with: the room, the job, and framepool's `attach`."""

    def __init__(
        self,
        job: agent_pb.Job,
        url: str,
        token: str,
        pool: WorkerPool,
        shared: SharedState,
        single_peer_connection: bool = False,
        spools: Mapping[str, SpoolWriter] | None = None,
    ) -> None:
        self.job = job
        self.url = url
        self.token = token
        self.single_peer_connection = single_peer_connection
        self.shared = shared
        self.room = rtc.Room()
        self.log_context_fields: dict[str, Any] = {
            "job": job.id,
            "room": job.room.name,
            "agent": job.agent_name or "(automatic)",
        }
        self.session = RoomSession(self.room, pool, job.id, job.room.name)
        self.settings = pool.settings
        self.intakes: list[DataIntake] = []
        self.dataplanes: list[JobDataPlane] = []
        self.data_processors: dict[str, DataFeed] = {}  # by name, for routes' to_processors (attach_data)
        self.spools = spools or {}  # the daemon's bridge spools by sink name (dataplane.Bridges)
        self.outputs = RoomOutputs(self.room, self.settings.room_outbox)  # packets, text, attributes, RPC
        self._shutdown_callbacks: list[ShutdownCallback] = []
        self._participant_entrypoints: list[ParticipantEntrypoint] = []
        self._participant_tasks = TaskSet("participant entrypoints", log)
        self._participants_started: set[tuple[str, int]] = set()
        self.shutdown_requested = asyncio.Event()
        self.shutdown_reason = ""
        self.connected = False

    @property
    def agent(self) -> rtc.LocalParticipant:
        return self.room.local_participant

    async def connect(self, auto_subscribe: bool = True) -> None:
        """Join the room with the assignment's token; `auto_subscribe=False` leaves subscription to
        `attach`."""
        if self.connected:
            return
        keep_callback_thread_states()  # before the first room: its events are the first callbacks
        await self.room.connect(
            self.url,
            self.token,
            rtc.RoomOptions(
                auto_subscribe=auto_subscribe,
                single_peer_connection=self.single_peer_connection,
                data_stream=rtc.room.DataStreamOptions(
                    max_payload_byte_length=self.settings.data_stream_max_bytes
                ),
            ),
        )
        self.connected = True
        for intake in self.intakes:
            intake.start()
        self.room.on("participant_connected", self._on_participant)
        for participant in self.room.remote_participants.values():
            self._on_participant(participant)

    async def wait_for_participant(
        self, identity: str | None = None, kind: int | Sequence[int] | None = None
    ) -> rtc.RemoteParticipant:
        """The first remote participant matching `identity`/`kind` (default: any non-agent), waiting if
        needed."""
        kinds = None if kind is None else {kind} if isinstance(kind, int) else set(kind)

        def matches(p: rtc.RemoteParticipant) -> bool:
            if identity is not None and p.identity != identity:
                return False
            if kinds is None:
                return p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
            return p.kind in kinds

        for participant in self.room.remote_participants.values():
            if matches(participant):
                return participant
        found: asyncio.Future[rtc.RemoteParticipant] = asyncio.get_running_loop().create_future()

        def on_join(p: rtc.RemoteParticipant) -> None:
            if matches(p) and not found.done():
                found.set_result(p)

        self.room.on("participant_connected", on_join)
        try:
            return await found
        finally:
            self.room.off("participant_connected", on_join)

    def add_participant_entrypoint(self, entrypoint: ParticipantEntrypoint) -> None:
        """Run `entrypoint(ctx, participant)` for every non-agent participant, present and future."""
        self._participant_entrypoints.append(entrypoint)
        if self.connected:
            for participant in self.room.remote_participants.values():
                self._on_participant(participant)

    def _on_participant(self, participant: rtc.RemoteParticipant) -> None:
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return
        for entrypoint in self._participant_entrypoints:
            key = (participant.identity, id(entrypoint))
            if key not in self._participants_started:
                self._participants_started.add(key)
                self._participant_tasks.spawn(entrypoint(self, participant), name=participant.identity)

    def add_shutdown_callback(self, callback: ShutdownCallback) -> None:
        """Awaited at the end of the job (after disconnect), with the shutdown reason if it takes an
        argument."""
        self._shutdown_callbacks.append(callback)

    def shutdown(self, reason: str = "") -> None:
        """End the job: the ordered cleanup runs and the job reports success."""
        if not self.shutdown_requested.is_set():
            self.shutdown_reason = reason
            self.shutdown_requested.set()

    def receive_data(self, consumer: Consumer, *, rpc_methods: Iterable[str] = ()) -> DataIntake:
        """Hand every data event of the room (packets, text and byte streams on any topic, calls of
        `rpc_methods`, DTMF, attribute and metadata changes) to `consumer` as a `DataMessage`, from now until
        the job ends. `consumer` runs on the event loop and must not block; returning False says it could not
        take the message (counted; an RPC caller gets framepool's SATURATED error). See
        `framepool.agent.intake`."""
        intake = DataIntake(self.room, self.job.id, consumer, self.settings, rpc_methods)
        self.intakes.append(intake)
        if self.connected:
            intake.start()
        return intake

    def run_dataflow(self, compiled: CompiledDataflow, *, rpc_methods: Iterable[str] = ()) -> JobDataPlane:
        """Run a compiled data flow (`framepool.dataflow.load_dataflow`) on every data event of the room,
        its intents carried out: room outputs, bridges, RoomService actions (framepool.agent.dataplane)."""
        from framepool.agent.dataplane import JobDataPlane

        plane = JobDataPlane(self, compiled, self.spools, rpc_methods)
        self.dataplanes.append(plane)
        return plane

    async def close_intakes(self) -> None:
        """Stop taking data events; then the data flows' open windows emit (before the outputs flush)."""
        for intake in self.intakes:
            await intake.aclose()
        for plane in self.dataplanes:
            await plane.aclose()
        for feed in dict.fromkeys(self.data_processors.values()):  # after the planes: their flush may send
            await feed.aclose()

    async def attach_data(self, processors: DataProcessors, *, output: DataOutput | None = None) -> DataFeed:
        """Run data processors (`DataProcessor` subclasses) in the worker pool for this job; their results go
        to `output` (default DataOutput()) like other processors' results. Returns once they run in a worker.

        `processors`: specs (each named by its spec name) or a mapping name → spec, the names a data flow's
        route sends to (`to_processors`). Nothing reaches them by itself: a route does, or the agent hands
        messages over, all of the room's with `ctx.receive_data(feed.send)`, or some with `feed.send(msg)`.
        One worker hosts them; if it dies they restart there with fresh state (framepool.agent.datafeed)."""
        from framepool.agent.datafeed import DataFeed, named_specs
        from framepool.agent.outputs import DataOutput

        named = named_specs(processors)
        taken = [name for name in named if name in self.data_processors]
        if taken:
            raise ValueError(f"data processor {taken[0]!r} is already attached to this job")
        number = len(dict.fromkeys(self.data_processors.values()))
        labels = {"room": self.job.room.name, "job": self.job.id, "source": "data"}
        stream_id = f"{self.job.id}/data/{number}"
        feed = DataFeed(
            self.session.pool,
            named,
            stream_id,
            labels,
            self.outputs,
            output or DataOutput(),
            self.session.blobs,
        )
        await feed.open()
        self.data_processors.update(dict.fromkeys(named, feed))
        return feed

    def attach(
        self,
        processors: str | ProcessorSpec | Sequence[str | ProcessorSpec],
        *,
        participants: Iterable[str] | None = None,
        sources: Iterable[str] | None = None,
        output: Output | Sequence[Output] | None = None,
    ) -> Rule:
        """Feed matching tracks (present and future) to `processors` in the workers; route results to
        `output`.

        `participants`: identities (default everyone); `sources`: camera, microphone, screen_share, ...
        (default all of the processors' kind). `output`: DataOutput (results as data messages), TrackOutput
        (output frames as a published track), or both; default DataOutput().
        """
        from framepool.agent.outputs import DataOutput

        rule = make_rule(processors, participants, sources, DataOutput() if output is None else output)
        return self.session.attach(rule)

    async def run_shutdown_callbacks(self, deadline: float) -> None:
        """Await each callback in turn until the monotonic `deadline`; one that overruns it is cut short."""
        for callback in self._shutdown_callbacks:
            params = inspect.signature(callback).parameters
            coro = callback(self.shutdown_reason) if params else callback()  # type: ignore[call-arg]
            try:
                await asyncio.wait_for(coro, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                log.warning(
                    "shutdown callback %s overran the job's shutdown_timeout",
                    getattr(callback, "__name__", callback),
                )
            except Exception:
                log.exception("shutdown callback failed")

    async def cancel_participant_tasks(self) -> None:
        await self._participant_tasks.aclose()


StatusReporter = Callable[[agent_pb.JobStatus, str], Awaitable[None]]


class RunningJob:
    """One job from assignment to its final status report."""

    def __init__(
        self, ctx: JobContext, entrypoint: Entrypoint, report: StatusReporter, shutdown_timeout: float
    ) -> None:
        self.ctx = ctx
        self.entrypoint = entrypoint
        self.report = report
        self.shutdown_timeout = shutdown_timeout
        self.error = ""
        self.done = asyncio.Event()
        self.status: agent_pb.JobStatus = agent_pb.JS_PENDING
        self.started_at = time.time()  # unix seconds, for status reports

    @property
    def id(self) -> str:
        return self.ctx.job.id

    def terminate(self, reason: str) -> None:
        """End the job from outside (JobTermination, daemon shutdown)."""
        self.ctx.shutdown(reason)

    async def run(self) -> None:
        with log_context(**self.ctx.log_context_fields):
            log.info("job started")
            await self._report(agent_pb.JS_RUNNING)
            self.ctx.room.on("disconnected", self._on_disconnected)
            entry = asyncio.create_task(self._run_entrypoint())
            # Every way a job ends goes through shutdown_requested (the entrypoint returning or raising too).
            await self.ctx.shutdown_requested.wait()
            entry.cancel()
            await asyncio.gather(entry, return_exceptions=True)
            await self._cleanup()
            self.status = agent_pb.JS_FAILED if self.error else agent_pb.JS_SUCCESS
            await self._report(self.status, self.error)
            log.info(
                "job ended: %s%s",
                agent_pb.JobStatus.Name(self.status),
                f" ({self.error})" if self.error else "",
            )
            self.done.set()

    async def _run_entrypoint(self) -> None:
        try:
            await self.entrypoint(self.ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("entrypoint failed")
            self.ctx.shutdown("entrypoint failed")
            return
        if not self.ctx.connected:
            # Nothing to wait for: an entrypoint that never joined the room is done when it returns.
            self.ctx.shutdown("entrypoint returned")

    def _on_disconnected(self, reason: Any) -> None:
        name = rtc.DisconnectReason.Name(reason) if isinstance(reason, int) else str(reason)  # type: ignore[arg-type]
        self.ctx.shutdown(f"disconnected ({name})")

    async def _cleanup(self) -> None:
        """The shutdown ladder: one `shutdown_timeout` deadline for all rungs, each run even when an earlier
        one failed.

        One deadline, not one timeout per rung: the daemon's stop budget (drain + shutdown_timeout + the
        worker ladder) is what systemd's TimeoutStopSec and Docker's grace period are checked against, so
        the whole ladder must fit in `shutdown_timeout`. A rung that finds the time used up is reported as
        timed out, which fails the job.
        """
        ctx = self.ctx
        deadline = time.monotonic() + self.shutdown_timeout
        # The rungs before the disconnect end a reserve early, so that one of them overrunning (a processor's
        # close() that never returns) cannot leave the agent in the room; the ladder still fits the deadline.
        before_disconnect = deadline - min(DISCONNECT_RESERVE, self.shutdown_timeout / 4)
        log.info("job shutting down: %s", ctx.shutdown_reason or "requested")
        rungs: list[tuple[str, Callable[[], Awaitable[None]], float]] = [
            ("participant tasks", ctx.cancel_participant_tasks, before_disconnect),
            ("data intake", ctx.close_intakes, before_disconnect),
            ("detach streams", ctx.session.detach_streams, before_disconnect),
            ("flush results", ctx.session.flush_results, before_disconnect),
            ("flush outputs", ctx.outputs.flush, before_disconnect),
            ("unpublish", ctx.session.unpublish, before_disconnect),
            ("disconnect", ctx.room.disconnect, deadline),
            ("close outputs", ctx.outputs.aclose, deadline),
            ("shutdown callbacks", lambda: ctx.run_shutdown_callbacks(deadline), deadline),
        ]
        for name, rung, rung_deadline in rungs:
            remaining = rung_deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                log.debug("shutdown rung %r (%.1f s left)", name, remaining)
                await asyncio.wait_for(rung(), remaining)
            except TimeoutError:
                log.warning(
                    "shutdown rung %r: shutdown_timeout (%.1f s) used up", name, self.shutdown_timeout
                )
                self.error = self.error or f"shutdown rung {name!r} timed out"
            except Exception as exc:
                log.exception("shutdown rung %r failed", name)
                self.error = self.error or f"shutdown rung {name!r} failed: {exc}"

    async def _report(self, status: agent_pb.JobStatus, error: str = "") -> None:
        self.status = status
        await self.report(status, error)
