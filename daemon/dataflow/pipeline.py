"""One job's chain of built-in data processors (supervisor process, on the loop that holds the rooms).

    intake ──DataMessage──▶ moderate* ─▶ transform* ─▶ aggregate* ─▶ transcripts* ─▶ route* ──▶ intents
                             (drop)       (drop)      (observe)                                 │
    timer ──tick(now)──▶ aggregate* (close windows, snapshots, rate-limited attributes) ────────┘

Each kind of stage runs in the order of its tables in the file. Moderation comes first so nothing
re-broadcast, transformed, counted or bridged escapes it; transforms next, so aggregates, transcripts and
routes see the reshaped payload; aggregates observe without consuming; every matching transcript stage and
route then adds its intents. A message that no transcript stage or route takes is counted `unrouted`.

Cost and bounds. `process` and `tick` are synchronous, do no I/O and never raise for anything a participant
can send: per message they decode the payload at most once per transform, evaluate the configured
expressions and regexes, and (for an attribute-chosen fan-out) walk the room's participant list once. State
is bounded by the config: per aggregate (open windows × max_keys or max_senders), per moderation stage
(max_tracked_senders), per transcript stage (remember_segments). Every stage counts what it did
(`stats()`); an unexpected exception in a stage is caught, logged once per stage and counted as `crashed`
on the pipeline, and the message is dropped, so one bad message cannot take the room's loop down.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from framepool.dataflow.aggregate import Aggregate
from framepool.dataflow.config import DataflowConfig, convert
from framepool.dataflow.envelope import Envelope
from framepool.dataflow.intents import Intent, RoomView
from framepool.dataflow.moderate import Moderate
from framepool.dataflow.route import Route
from framepool.dataflow.transcripts import Transcripts
from framepool.dataflow.transform import Transform
from framepool.processors.messages import DataMessage, new_event_id

log = logging.getLogger("framepool.dataflow")


class CompiledDataflow:
    """A `DataflowConfig` with its expressions, globs and templates compiled: made once per agent (so a bad
    config fails `framepool start`), then `pipeline()` once per job."""

    def __init__(self, config: DataflowConfig, where: str = "data") -> None:
        self.config = config
        self.where = where
        # Compile everything now, so errors surface at load; pipelines compile their own (cheap) copies.
        self._stages(lambda topic, payload, now: _unused(topic))

    def _stages(self, derive: Callable[[str, bytes, float], DataMessage]) -> dict[str, list[Any]]:
        c, w = self.config, self.where
        return {
            "moderate": [Moderate(s, f"{w}.moderate[{i}]") for i, s in enumerate(c.moderate)],
            "transform": [Transform(s, f"{w}.transform[{i}]") for i, s in enumerate(c.transform)],
            "aggregate": [Aggregate(s, f"{w}.aggregate[{i}]", derive) for i, s in enumerate(c.aggregate)],
            "transcripts": [Transcripts(s, f"{w}.transcripts[{i}]") for i, s in enumerate(c.transcripts)],
            "route": [Route(s, f"{w}.route[{i}]") for i, s in enumerate(c.route)],
        }

    def empty(self) -> bool:
        c = self.config
        return not (c.moderate or c.transform or c.aggregate or c.transcripts or c.route)

    def pipeline(
        self,
        room: RoomView,
        *,
        job: str = "",
        room_name: str = "",
        next_seq: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Pipeline:
        return Pipeline(self, room, job=job, room_name=room_name, next_seq=next_seq, clock=clock)


def _unused(topic: str) -> DataMessage:
    raise AssertionError(f"no messages are derived while compiling ({topic})")


def load_dataflow(raw: Mapping[str, Any], where: str = "data") -> CompiledDataflow:
    """Validate and compile the `data` table of an agent; ConfigError naming the key path."""
    return CompiledDataflow(convert(raw, where), where)


class Pipeline:
    """The stages of one job (see the module docstring)."""

    def __init__(
        self,
        compiled: CompiledDataflow,
        room: RoomView,
        *,
        job: str,
        room_name: str,
        next_seq: Callable[[], int] | None,
        clock: Callable[[], float],
    ) -> None:
        self.room = room
        self.job = job
        self.room_name = room_name
        # Results sent to bridges take their place in the job's order: the intake shares its seq counter.
        self._next_seq = next_seq or itertools.count(1).__next__
        self._clock = clock
        stages = compiled._stages(self._derive)
        self._moderate: list[Moderate] = stages["moderate"]
        self._transform: list[Transform] = stages["transform"]
        self._aggregate: list[Aggregate] = stages["aggregate"]
        self._transcripts: list[Transcripts] = stages["transcripts"]
        self._route: list[Route] = stages["route"]
        self.counters: Counter[str] = Counter()
        self._crashed: set[str] = set()

    def process(self, message: DataMessage) -> list[Intent]:
        """The intents for one received message (and for windows its arrival closed)."""
        self.counters["received"] += 1
        out: list[Intent] = []
        envelope = self._filter(Envelope(message), out)
        if envelope is None:
            self.counters["dropped"] += 1
            return out
        now = self._clock()
        taken = False
        for aggregate in self._aggregate:
            with self._guard(aggregate.name):
                aggregate.observe(envelope, self.room, now, out)
        for transcripts in self._transcripts:
            with self._guard(transcripts.name):
                taken |= transcripts(envelope, out)
        for route in self._route:
            with self._guard(route.name):
                taken |= route(envelope, self.room, out)
        if not taken:
            self.counters["unrouted"] += 1
        return out

    def _filter(self, envelope: Envelope | None, out: list[Intent]) -> Envelope | None:
        """Moderation and transforms: the envelope to go on with, or None (a stage that fails drops)."""
        for moderate in self._moderate:
            assert envelope is not None
            current, envelope = envelope, None
            with self._guard(moderate.name):
                envelope = moderate(current, self.room, out)
            if envelope is None:
                return None
        for transform in self._transform:
            assert envelope is not None
            current, envelope = envelope, None
            with self._guard(transform.name):
                envelope = transform(current, self.room)
            if envelope is None:
                return None
        return envelope

    def tick(self, now: float | None = None) -> list[Intent]:
        """Timer work: close windows, periodic snapshots, rate-limited attribute updates."""
        now = self._clock() if now is None else now
        out: list[Intent] = []
        for aggregate in self._aggregate:
            with self._guard(aggregate.name):
                aggregate.tick(now, out)
        return out

    def flush(self, now: float | None = None) -> list[Intent]:
        """The job ends: every open window emits its final result, waiting attribute updates go out."""
        now = self._clock() if now is None else now
        out: list[Intent] = []
        for aggregate in self._aggregate:
            with self._guard(aggregate.name):
                aggregate.flush(now, out)
        return out

    def stats(self) -> dict[str, dict[str, int]]:
        """{"pipeline": {...}, "<kind>:<name>": {...}} of every counter."""
        stages: list[Any] = [*self._moderate, *self._transform, *self._aggregate, *self._transcripts]
        stages += self._route
        return {"pipeline": dict(self.counters), **{s.name: dict(s.counters) for s in stages}}

    @contextlib.contextmanager
    def _guard(self, name: str) -> Iterator[None]:
        """A bug in a stage drops what it was doing (counted, logged once per stage); it never raises."""
        try:
            yield
        except Exception:
            self.counters["crashed"] += 1
            if name not in self._crashed:
                self._crashed.add(name)
                log.exception("data-flow stage %s failed; dropping the message (logged once per stage)", name)

    def _derive(self, topic: str, payload: bytes, now: float) -> DataMessage:
        return DataMessage(
            event_id=new_event_id(int(now * 1e9)),
            seq=self._next_seq(),
            job=self.job,
            room=self.room_name,
            kind="packet",
            topic=topic,
            sender="",
            sender_kind="agent",
            received_us=int(now * 1e6),
            payload=payload,
        )
