"""A job's data plane end to end: intake → data-flow pipeline → intents executed; and the daemon's bridges
(supervisor process).

`Bridges` is the daemon's side of durable delivery: one spool writer per configured sink
(`framepool.ipc.spool`) and the bridge process that delivers from the spools (`framepool.bridgehost`). It
starts before any job and stops after every job has ended, writers first (their final fdatasync runs off
the loop), then the bridge, which delivers what is spooled within `bridge_stop_timeout`.

`JobDataPlane` runs one job's compiled data flow (`framepool.dataflow`): every `DataMessage` the intake
makes goes through the pipeline, and the intents that come back are carried out here, the one place with
side effects: room outputs through `ctx.outputs` (bounded, rate-limited), bridge events appended to their
sink's spool (never a wait; a full spool refuses and counts), RoomService actions through the server API.
`ToProcessors` hands the message to the job's data processors in the
worker pool (`ctx.attach_data`, framepool.agent.datafeed): one ring write per data stream, never a wait.
A timer ticks the pipeline (window closes, periodic emissions) every `TICK` seconds; at the end of the job
the pipeline is flushed (windows still open emit) before the outputs are.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from livekit import api, rtc
from livekit.protocol import models

from framepool.agent.intake import DataIntake, sender_kind
from framepool.agent.registration import http_url
from framepool.bridgehost import KILL_MARGIN, BridgeHost, bridge_start, open_spools
from framepool.dataflow.intents import (
    Intent,
    ParticipantView,
    PublishData,
    RoomServiceAction,
    SendText,
    SetAttributes,
    ToBridge,
    ToProcessors,
)
from framepool.dataflow.pipeline import CompiledDataflow, Pipeline
from framepool.ipc.spool import SpoolWriter
from framepool.processors.messages import DataMessage, SenderKind
from framepool.settings import Settings
from framepool.tasks import TaskSet

if TYPE_CHECKING:
    from framepool.agent.job import JobContext

log = logging.getLogger("framepool.agent.dataplane")
TICK = 0.25  # seconds between pipeline ticks: the resolution of window closes and periodic emissions


SPOOL_CLOSE_GRACE = 2.0  # seconds for the spools' final fdatasync before the bridge is told to stop


def bridges_budget(settings: Settings) -> float:
    """The longest `Bridges.aclose` takes (0 without sinks): the daemon's stop budget counts it."""
    return settings.bridge_stop_timeout + KILL_MARGIN + SPOOL_CLOSE_GRACE if settings.sinks else 0.0


class Bridges:
    """The daemon's spools and bridge process (see the module docstring); inert without `sinks`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spools: dict[str, SpoolWriter] = {}
        self.host: BridgeHost | None = None

    async def start(self) -> None:
        if not self.settings.sinks:
            return
        self.spools = await asyncio.to_thread(open_spools, self.settings)  # recovery reads the spools
        self.host = BridgeHost(bridge_start(self.settings))
        self.host.start()
        log.info("bridges started: %s", ", ".join(self.spools))

    async def aclose(self) -> None:
        spools, self.spools = self.spools, {}
        for writer in spools.values():
            await asyncio.to_thread(writer.close)
        if self.host is not None:
            await self.host.stop()


class _RoomView:
    """The SDK room as the data-flow stages read it (`framepool.dataflow.intents.RoomView`)."""

    def __init__(self, room: rtc.Room) -> None:
        self.room = room

    def participants(self) -> Iterable[ParticipantView]:
        return [_Member(p) for p in self.room.remote_participants.values()]

    def participant(self, identity: str) -> ParticipantView | None:
        member = self.room.remote_participants.get(identity)
        return _Member(member) if member is not None else None


class _Member:
    def __init__(self, participant: rtc.RemoteParticipant) -> None:
        self.identity: str = participant.identity
        self.kind: SenderKind = sender_kind(participant)
        self.attributes: Mapping[str, str] = participant.attributes


class JobDataPlane:
    """One job's intake, pipeline and intent executor (see the module docstring)."""

    def __init__(
        self,
        ctx: JobContext,
        compiled: CompiledDataflow,
        spools: Mapping[str, SpoolWriter],
        rpc_methods: Iterable[str],
    ) -> None:
        self.ctx = ctx
        self.spools = spools
        self.counters: Counter[str] = Counter()  # intents carried out or refused, by what happened
        self._tasks = TaskSet(f"data plane of job {ctx.job.id}", log)
        self._warned: set[str] = set()
        self.intake: DataIntake = ctx.receive_data(self.consume, rpc_methods=rpc_methods)
        self.pipeline: Pipeline = compiled.pipeline(
            _RoomView(ctx.room), job=ctx.job.id, room_name=ctx.job.room.name, next_seq=self.intake.next_seq
        )
        self._ticker = self._tasks.spawn(self._tick(), name="data-flow ticks")

    def consume(self, message: DataMessage) -> bool:
        self.execute(self.pipeline.process(message))
        return True

    async def aclose(self) -> None:
        """The job ends: open windows emit, then the timer stops (the outputs are flushed after this)."""
        self._ticker.cancel()
        self.execute(self.pipeline.flush())
        await self._tasks.aclose()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.execute(self.pipeline.tick())

    def execute(self, intents: Iterable[Intent]) -> None:
        outputs = self.ctx.outputs
        for intent in intents:
            match intent:
                case PublishData():
                    outputs.publish_data(
                        intent.payload,
                        topic=intent.topic,
                        reliable=intent.reliable,
                        destinations=intent.destinations,
                    )
                case SendText():
                    outputs.send_text(intent.text, topic=intent.topic, destinations=intent.destinations)
                case SetAttributes():
                    outputs.set_attributes(intent.attributes)
                case ToBridge():
                    self._to_bridge(intent)
                case ToProcessors():
                    self._to_processors(intent)
                case RoomServiceAction():
                    self._tasks.spawn(self._room_action(intent), name=f"room action {intent.kind}")
            self.counters[type(intent).__name__] += 1

    def _to_bridge(self, intent: ToBridge) -> None:
        writer = self.spools.get(intent.sink)
        if writer is None:
            self._once(f"sink {intent.sink}", f"no sink named {intent.sink!r} is configured; events dropped")
            self.counters["bridge_unknown"] += 1
        elif not writer.append(intent.message):
            self.counters["bridge_refused"] += 1  # the spool is full: refused, counted in the writer too

    def _to_processors(self, intent: ToProcessors) -> None:
        """One ring write per data stream the named processors share (usually one per job)."""
        feeds = self.ctx.data_processors
        for name in intent.processors:
            if name not in feeds:
                self._once(
                    f"processor {name}", f"no data processor named {name!r} is attached; not sent to it"
                )
                self.counters["processors_unknown"] += 1
        for feed in dict.fromkeys(feeds[name] for name in intent.processors if name in feeds):
            if not feed.send(intent.message, intent.processors):
                self.counters["processors_refused"] += 1  # oversize, full or restarting: counted by the feed

    def _once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("job %s: %s", self.ctx.job.id, text)

    async def _room_action(self, action: RoomServiceAction) -> None:
        settings = self.ctx.settings
        room = self.ctx.job.room.name
        async with api.LiveKitAPI(
            http_url(settings.livekit_url), settings.api_key, settings.api_secret
        ) as lkapi:
            who = api.RoomParticipantIdentity(room=room, identity=action.identity)
            try:
                if action.kind == "remove_participant":
                    await lkapi.room.remove_participant(who)
                else:
                    current = await lkapi.room.get_participant(who)
                    permission = models.ParticipantPermission()
                    permission.CopyFrom(current.permission)
                    permission.can_publish_data = False
                    await lkapi.room.update_participant(
                        api.UpdateParticipantRequest(
                            room=room, identity=action.identity, permission=permission
                        )
                    )
                log.warning(
                    "job %s: %s %s (%s)", self.ctx.job.id, action.kind, action.identity, action.reason
                )
            except api.TwirpError as exc:
                self.counters["room_action_failed"] += 1
                log.warning("job %s: %s of %s failed: %s", self.ctx.job.id, action.kind, action.identity, exc)
