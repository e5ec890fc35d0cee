"""Agent dispatch bookkeeping of the loopback dev server (runs in the dev server process).

Follows livekit-server's model: every room holds a set of *dispatches*. A room created with a
RoomConfiguration ``agents`` list (CreateRoom, or the first joiner's token) gets one dispatch per
entry; a room without one gets a single dispatch for agent_name "" (automatic dispatch), so
explicit configuration suppresses automatic dispatch. Every dispatch launches jobs: a ROOM job
when it is created, a PARTICIPANT job per non-agent participant that joins, a PUBLISHER job per
non-agent participant that first publishes - each only when a worker registered for that agent
name and job type exists. A job is offered to workers one at a time (weighted random by
1 - load; a refusal or a silent worker moves on to the next), then assigned with a freshly
minted participant token.

The room side is consumed through the small Protocols below rather than the concrete classes of
rooms.py, so this module states exactly what it relies on.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from livekit.protocol import agent as agent_pb
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import models

from framepool.tasks import TaskSet

if TYPE_CHECKING:
    from .agents import AgentWorker

log = logging.getLogger("framepool.devserver.dispatch")

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789"


def new_id(prefix: str) -> str:
    """A livekit-style id: a type prefix ("AD_", "AJ_", "AW_") and 12 random characters."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


class ParticipantView(Protocol):
    """What dispatch needs of a room participant (rooms.Participant)."""

    @property
    def identity(self) -> str: ...
    @property
    def is_agent(self) -> bool: ...
    def to_proto(self) -> models.ParticipantInfo: ...


class RoomView(Protocol):
    """What dispatch needs of a room (rooms.Room)."""

    @property
    def name(self) -> str: ...
    @property
    def agents(self) -> list[dispatch_pb.RoomAgentDispatch]: ...
    @property
    def participants(self) -> Mapping[str, ParticipantView]: ...
    def to_proto(self) -> models.Room: ...


ENDED_STATUSES = frozenset({agent_pb.JS_SUCCESS, agent_pb.JS_FAILED, agent_pb.JS_CANCELLED})


@dataclass
class JobRecord:
    """One job: its protobuf (state included), the dispatch it belongs to and the worker holding it."""

    job: agent_pb.Job
    dispatch_id: str
    worker_id: str = ""
    terminated: bool = False

    @property
    def ended(self) -> bool:
        return self.job.state.status in ENDED_STATUSES


@dataclass
class RoomDispatches:
    """The dispatches of one room, and which participants already got their PUBLISHER jobs."""

    room: RoomView
    dispatches: dict[str, dispatch_pb.AgentDispatch] = field(default_factory=dict)
    publishers_dispatched: set[str] = field(default_factory=set)


class AgentDispatcher:
    """Workers, dispatches and jobs of the dev server; a RoomRegistry listener."""

    def __init__(
        self, mint_token: TokenMinter, url: Callable[[], str], availability_timeout: float = 5.0
    ) -> None:
        self.workers: dict[str, AgentWorker] = {}
        self.rooms: dict[str, RoomDispatches] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.url = url
        # livekit-server waits a bounded time for AvailabilityResponse before trying another worker.
        self.availability_timeout = availability_timeout
        self.rng = random.Random()
        self._mint_token = mint_token
        self._tasks = TaskSet("agent dispatch", log)

    # -- RoomRegistry listener -------------------------------------------------------------

    def room_created(self, room: RoomView) -> None:
        entry = self.rooms.setdefault(room.name, RoomDispatches(room))
        configured = list(room.agents) or [dispatch_pb.RoomAgentDispatch()]
        for config in configured:
            self._add_dispatch(entry, config.agent_name, config.metadata, dict(config.attributes))

    def participant_joined(self, room: RoomView, participant: ParticipantView) -> None:
        entry = self.rooms.get(room.name)
        if entry is None or participant.is_agent:
            return
        for dispatch in entry.dispatches.values():
            self._launch(room, dispatch, agent_pb.JT_PARTICIPANT, participant)

    def track_published(self, room: RoomView, participant: ParticipantView, track: models.TrackInfo) -> None:
        del track
        entry = self.rooms.get(room.name)
        if entry is None or participant.is_agent or participant.identity in entry.publishers_dispatched:
            return
        entry.publishers_dispatched.add(participant.identity)
        for dispatch in entry.dispatches.values():
            self._launch(room, dispatch, agent_pb.JT_PUBLISHER, participant)

    def participant_left(
        self, room: RoomView, participant: ParticipantView, reason: models.DisconnectReason
    ) -> None:
        del reason
        entry = self.rooms.get(room.name)
        if entry is not None:
            entry.publishers_dispatched.discard(participant.identity)
        if not participant.is_agent:
            return
        for record in list(self.jobs.values()):
            state = record.job.state
            if record.job.room.name == room.name and state.participant_identity == participant.identity:
                self.terminate(record, agent_pb.JSR_UNSPECIFIED)

    def room_closed(self, room: RoomView) -> None:
        self.rooms.pop(room.name, None)
        for record in list(self.jobs.values()):
            if record.job.room.name == room.name:
                self.terminate(record, agent_pb.JSR_ROOM_CLOSED)

    # -- AgentDispatchService ------------------------------------------------------------------

    def create_dispatch(
        self, room: RoomView, agent_name: str, metadata: str, attributes: dict[str, str]
    ) -> dispatch_pb.AgentDispatch:
        """Add an explicit dispatch to an existing room and launch its jobs for the room's current state."""
        entry = self.rooms.setdefault(room.name, RoomDispatches(room))
        dispatch = self._add_dispatch(entry, agent_name, metadata, attributes)
        for participant in list(room.participants.values()):
            if not participant.is_agent:
                self._launch(room, dispatch, agent_pb.JT_PARTICIPANT, participant)
                if participant.identity in entry.publishers_dispatched:
                    self._launch(room, dispatch, agent_pb.JT_PUBLISHER, participant)
        return self.dispatch_with_jobs(dispatch)

    def list_dispatches(self, room_name: str, dispatch_id: str = "") -> list[dispatch_pb.AgentDispatch]:
        entry = self.rooms.get(room_name)
        if entry is None:
            return []
        return [
            self.dispatch_with_jobs(d)
            for d in entry.dispatches.values()
            if not dispatch_id or d.id == dispatch_id
        ]

    def delete_dispatch(self, room_name: str, dispatch_id: str) -> dispatch_pb.AgentDispatch | None:
        """Remove a dispatch; its live jobs get JobTermination (JSR_DISPATCH_DELETED)."""
        entry = self.rooms.get(room_name)
        dispatch = entry.dispatches.pop(dispatch_id, None) if entry else None
        if dispatch is None:
            return None
        dispatch.state.deleted_at = time.time_ns()
        result = self.dispatch_with_jobs(dispatch)
        for record in list(self.jobs.values()):
            if record.dispatch_id == dispatch_id:
                self.terminate(record, agent_pb.JSR_DISPATCH_DELETED)
        return result

    def dispatch_with_jobs(self, dispatch: dispatch_pb.AgentDispatch) -> dispatch_pb.AgentDispatch:
        snapshot = dispatch_pb.AgentDispatch()
        snapshot.CopyFrom(dispatch)
        snapshot.state.jobs.extend(r.job for r in self.jobs.values() if r.dispatch_id == dispatch.id)
        return snapshot

    def _add_dispatch(
        self, entry: RoomDispatches, agent_name: str, metadata: str, attributes: dict[str, str]
    ) -> dispatch_pb.AgentDispatch:
        dispatch = dispatch_pb.AgentDispatch(
            id=new_id("AD_"),
            agent_name=agent_name,
            room=entry.room.name,
            metadata=metadata,
            attributes=attributes,
            state=dispatch_pb.AgentDispatchState(created_at=time.time_ns()),
        )
        entry.dispatches[dispatch.id] = dispatch
        log.info("dispatch %s: agent %r in room %s", dispatch.id, agent_name, entry.room.name)
        self._launch(entry.room, dispatch, agent_pb.JT_ROOM, None)
        return dispatch

    # -- jobs ----------------------------------------------------------------------------------------

    def _launch(
        self,
        room: RoomView,
        dispatch: dispatch_pb.AgentDispatch,
        job_type: agent_pb.JobType,
        participant: ParticipantView | None,
    ) -> None:
        if not any(w.can_take(dispatch.agent_name, job_type) for w in self.workers.values()):
            return
        job = agent_pb.Job(
            id=new_id("AJ_"),
            dispatch_id=dispatch.id,
            type=job_type,
            room=room.to_proto(),
            metadata=dispatch.metadata,
            agent_name=dispatch.agent_name,
            attributes=dict(dispatch.attributes),
            state=agent_pb.JobState(status=agent_pb.JS_PENDING),
        )
        if participant is not None:
            job.participant.CopyFrom(participant.to_proto())
        record = JobRecord(job, dispatch.id)
        self.jobs[job.id] = record
        self.spawn(self._offer(record))

    def launch_simulated(self, worker: AgentWorker, request: agent_pb.SimulateJobRequest) -> None:
        """A job for a room that needs not exist, offered only to the worker that asked (dev mode)."""
        room = models.Room()
        room.CopyFrom(request.room)
        if not room.sid:
            room.sid = new_id("RM_")
        job = agent_pb.Job(
            id=new_id("AJ_"),
            type=request.type,
            room=room,
            agent_name=worker.agent_name,
            namespace=worker.namespace,
            state=agent_pb.JobState(status=agent_pb.JS_PENDING),
        )
        if request.HasField("participant"):
            job.participant.CopyFrom(request.participant)
        record = JobRecord(job, "")
        self.jobs[job.id] = record
        self.spawn(self._offer(record, only=worker))

    def select_worker(self, job: agent_pb.Job, tried: set[str]) -> AgentWorker | None:
        """Weighted random choice by 1 - load among the available, untried workers for the job."""
        candidates = [
            w
            for w in self.workers.values()
            if w.id not in tried and w.available and w.can_take(job.agent_name, job.type)
        ]
        if not candidates:
            return None
        weights = [max(0.0, 1.0 - w.load) for w in candidates]
        if sum(weights) <= 0.0:
            return self.rng.choice(candidates)
        return self.rng.choices(candidates, weights=weights)[0]

    async def _offer(self, record: JobRecord, only: AgentWorker | None = None) -> None:
        job = record.job
        tried: set[str] = set()
        while True:
            worker = only if only is not None and only.id not in tried else None
            if only is None:
                worker = self.select_worker(job, tried)
            if worker is None:
                self._end(record, agent_pb.JS_FAILED, "no worker available")
                return
            tried.add(worker.id)
            answer = await worker.request_availability(job, self.availability_timeout)
            if answer is None:
                log.info("job %s: worker %s did not answer availability in time", job.id, worker.id)
                continue
            if answer.terminate:
                self._end(record, agent_pb.JS_CANCELLED, "")
                return
            if not answer.available:
                log.info("job %s: worker %s is not available", job.id, worker.id)
                continue
            if record.terminated:
                return  # the dispatch or the room went away while the worker was deciding
            await self._assign(record, worker, answer)
            return

    async def _assign(
        self, record: JobRecord, worker: AgentWorker, answer: agent_pb.AvailabilityResponse
    ) -> None:
        job = record.job
        identity = answer.participant_identity or f"agent-{job.id}"
        record.worker_id = worker.id
        job.state.worker_id = worker.id
        job.state.participant_identity = identity
        job.state.started_at = time.time_ns()
        job.state.updated_at = job.state.started_at
        token = self._mint_token(
            job.room.name,
            identity,
            answer.participant_name,
            answer.participant_metadata,
            dict(answer.participant_attributes),
            worker.permissions,
        )
        worker.jobs[job.id] = record
        await worker.send(agent_pb.JobAssignment(job=job, url=self.url(), token=token))
        log.info(
            "job %s: assigned to worker %s as %s (%s, room %s)",
            job.id,
            worker.id,
            identity,
            agent_pb.JobType.Name(job.type),
            job.room.name,
        )

    def update_job(self, worker: AgentWorker, update: agent_pb.UpdateJobStatus) -> None:
        record = self.jobs.get(update.job_id)
        if record is None or record.worker_id != worker.id:
            log.warning("worker %s: status for unknown job %s ignored", worker.id, update.job_id)
            return
        state = record.job.state
        if update.status != state.status:
            log.info(
                "job %s: %s -> %s%s",
                update.job_id,
                agent_pb.JobStatus.Name(state.status),
                agent_pb.JobStatus.Name(update.status),
                f" ({update.error})" if update.error else "",
            )
        state.status = update.status
        state.error = update.error
        state.updated_at = time.time_ns()
        if record.ended:
            state.ended_at = state.updated_at
            worker.jobs.pop(update.job_id, None)

    def terminate(self, record: JobRecord, reason: agent_pb.JobStateReason) -> None:
        """Send JobTermination to the job's worker; a job no live worker holds is cancelled here.

        The worker reports the final status itself (UpdateJobStatus), as with livekit-server.
        """
        if record.ended or record.terminated:
            return
        record.terminated = True
        record.job.state.reason = reason
        worker = self.workers.get(record.worker_id)
        if worker is None:
            self._end(record, agent_pb.JS_CANCELLED, "")
            return
        log.info(
            "job %s: terminating on worker %s (%s)",
            record.job.id,
            worker.id,
            agent_pb.JobStateReason.Name(reason),
        )
        self.spawn(worker.send(agent_pb.JobTermination(job_id=record.job.id)))

    def _end(self, record: JobRecord, status: agent_pb.JobStatus, error: str) -> None:
        state = record.job.state
        log.info(
            "job %s: %s -> %s%s",
            record.job.id,
            agent_pb.JobStatus.Name(state.status),
            agent_pb.JobStatus.Name(status),
            f" ({error})" if error else "",
        )
        state.status = status
        state.error = error
        state.ended_at = state.updated_at = time.time_ns()

    def adopt(self, worker: AgentWorker, request: agent_pb.MigrateJobRequest) -> None:
        """A reconnected worker reports the jobs it still runs: they stay (or become) assigned to it."""
        for job in request.jobs:
            if job.id not in self.jobs:
                self.jobs[job.id] = JobRecord(job, job.dispatch_id)
        for job_id in [*request.job_ids, *(j.id for j in request.jobs)]:
            record = self.jobs.get(job_id)
            if record is None:
                log.warning("worker %s: cannot migrate unknown job %s", worker.id, job_id)
                continue
            record.worker_id = worker.id
            record.job.state.worker_id = worker.id
            worker.jobs[job_id] = record
            log.info("job %s: migrated to worker %s", job_id, worker.id)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task this dispatcher owns; its failure is logged, never lost."""
        self._tasks.spawn(coro)

    async def aclose(self) -> None:
        await self._tasks.aclose()
        for worker in list(self.workers.values()):
            await worker.close()


class TokenMinter(Protocol):
    def __call__(
        self,
        room: str,
        identity: str,
        name: str,
        metadata: str,
        attributes: dict[str, str],
        permissions: models.ParticipantPermission,
    ) -> str: ...
