"""The systems the jobs benchmark compares, behind one interface (harness process).

- `FramepoolSystem`: one agent server process tree (supervisor + forkserver + pinned workers); a job is
  started with CreateDispatch (livekit-api) for the room, so its start latency spans dispatch request →
  availability request → accept → assignment → room join → subscription → first 100 ms window processed
  in a worker → result published as data → received by the room's publisher.
- `BaselineSystem`: process-per-job; one prewarmed process per job (started before the jobs of a step, as
  LiveKit Agents keeps idle processes), so its latency spans job handed to the idle process → room join →
  subscription → first window → data received. No dispatch round trip: compare it with framepool's
  "assignment → first result" part, which `assigned_at` separates from the dispatch part.

- `FloorSystem` ("sdk-floor"): one process holding one `rtc.Room` per job, reading the job's audio track
  through `rtc.AudioStream` at framepool's frame size and dropping the frames (`_jobs_floor.py`): the SDK's
  own cost per job, which framepool cannot go below. It publishes nothing, so its start latency ends at the
  first frame and its rate counts frames (in 100 ms units), not results. `sdk-floor-data` (on request only)
  also publishes one data message of a result's size per 100 ms and room: the SDK's cost of sending results.

All measure "the whole tree" the same way (`ProcessSet`): framepool's or the floor's whole process tree, or
the set of busy baseline job processes (the idle spare is not a job and is left out).
"""

from __future__ import annotations

import asyncio
import time
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from _jobs_procs import Helper, HelperError, ProcessSet, python_argv
from livekit import api

KEY, SECRET = "devkey", "secret"
TOPIC = "levels"
AGENT_NAME = "jobbench"
PROCESSOR = "audio-level(window_ms=100)"
START_TIMEOUT = 60.0
JOB_TIMEOUT = 30.0

# The dev server's well-known secret is short on purpose; PyJWT's warning about it is noise here.
warnings.filterwarnings("ignore", message="The HMAC key is")


def token(identity: str, room: str) -> str:
    grants = api.VideoGrants(
        room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True
    )
    return (
        api.AccessToken(KEY, SECRET).with_identity(identity).with_name(identity).with_grants(grants).to_jwt()
    )


class System(ABC):
    """What the ramp needs from a system under test."""

    name = ""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.url = url
        self.log_dir = log_dir

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def start_job(self, room: str) -> float:
        """Start the job for `room`; the monotonic time the job was requested (the latency's start)."""

    async def prepare(self, jobs: int) -> None:
        """Get ready to start `jobs` more jobs (outside the latency's span; the baseline prewarms
        processes)."""
        return None

    async def assigned_at(self, room: str) -> float | None:
        """When the job of `room` reached the system, if it can tell (splits dispatch from job start)."""
        return None

    @abstractmethod
    def measured(self) -> ProcessSet: ...

    def supervisor(self) -> ProcessSet | None:
        """The process holding the room connections, when it is one process (framepool's supervisor)."""
        return None

    async def counters(self) -> dict[str, Any]:
        """Drop counters the system itself reports (empty when it reports none)."""
        return {}

    def first_output(self, room: str, loadgen: Helper) -> asyncio.Future[dict[str, Any]]:
        """A future for the end of the job's start latency: by default its first result reaching the
        publisher. Asked before the job starts, so a fast one is not missed."""
        return loadgen.expect("first_result", room)

    async def output_counts(self, loadgen: Helper) -> dict[str, list[float]]:
        """Per room [outputs in results (100 ms windows), arrival of the last]: by default the publishers'
        counts."""
        counts: dict[str, list[float]] = (await loadgen.request({"op": "counts"}))["counts"]
        return counts

    @abstractmethod
    async def stop(self) -> None: ...


class FramepoolSystem(System):
    name = "framepool"

    def __init__(
        self,
        url: str,
        log_dir: Path,
        workers: int,
        load_threshold: float,
        single_peer_connection: bool = False,
    ) -> None:
        super().__init__(url, log_dir)
        extra = ["--single-peer-connection"] if single_peer_connection else []
        self.agent = Helper(
            "framepool-agent",
            python_argv(
                "_jobs_agent.py",
                "--url",
                url,
                "--key",
                KEY,
                "--secret",
                SECRET,
                "--agent-name",
                AGENT_NAME,
                "--topic",
                TOPIC,
                "--processor",
                PROCESSOR,
                "--workers",
                str(workers),
                "--load-threshold",
                str(load_threshold),
                *extra,
            ),
            log_dir,
        )
        self.lkapi: api.LiveKitAPI | None = None
        self.workers: list[int] = []

    async def start(self) -> None:
        await self.agent.start()
        registered = await self.agent.event("registered", START_TIMEOUT)
        self.workers = registered.get("workers", [])
        self.lkapi = api.LiveKitAPI(self.url.replace("ws://", "http://", 1), KEY, SECRET)

    async def start_job(self, room: str) -> float:
        assert self.lkapi is not None
        requested = time.monotonic()
        await self.lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=AGENT_NAME, room=room)
        )
        return requested

    def measured(self) -> ProcessSet:
        return ProcessSet.tree(self.agent.pid)

    def supervisor(self) -> ProcessSet | None:
        return ProcessSet.of([self.agent.pid])

    async def counters(self) -> dict[str, Any]:
        return await self.agent.request({"op": "stats"})

    async def assigned_at(self, room: str) -> float | None:
        value = (await self.agent.request({"op": "assigned", "room": room}))["t"]
        return None if value is None else float(value)

    async def stop(self) -> None:
        if self.lkapi is not None:
            await self.lkapi.aclose()
        await self.agent.stop()


class BaselineSystem(System):
    """Process-per-job with every job process a fresh interpreter (no pages shared but the libraries')."""

    name = "baseline"

    def __init__(self, url: str, log_dir: Path) -> None:
        super().__init__(url, log_dir)
        self.busy: list[Helper] = []
        self.idle: list[Helper] = []
        self._spawned = 0

    async def _prewarm(self) -> Helper:
        self._spawned += 1
        helper = Helper(f"baseline-{self._spawned}", python_argv("_jobs_baseline.py"), self.log_dir)
        await helper.start()
        await helper.event("ready", START_TIMEOUT)
        return helper

    async def start(self) -> None:
        await self.prepare(1)

    async def prepare(self, jobs: int) -> None:
        # As LiveKit Agents' idle process pool: a job never waits for an interpreter to start.
        while len(self.idle) < jobs:
            self.idle.append(await self._prewarm())

    async def start_job(self, room: str) -> float:
        if not self.idle:
            raise HelperError("no idle baseline process")
        job = self.idle.pop()
        self.busy.append(job)
        requested = time.monotonic()
        await job.request(
            {"op": "run", "url": self.url, "token": token(f"job-{room}", room), "topic": TOPIC}, JOB_TIMEOUT
        )
        return requested

    def measured(self) -> ProcessSet:
        return ProcessSet.of([helper.pid for helper in self.busy])

    async def stop(self) -> None:
        helpers = [*self.busy, *self.idle]
        for helper in helpers:
            helper.send_close()
        for helper in helpers:
            await helper.stop(grace=5.0)


class ForkedBaselineSystem(System):
    """Process-per-job with the job processes forked from a forkserver (`_jobs_forked.py`), as LiveKit
    Agents."""

    name = "baseline"

    def __init__(self, url: str, log_dir: Path) -> None:
        super().__init__(url, log_dir)
        self.parent = Helper("baseline-supervisor", python_argv("_jobs_forked.py"), log_dir)
        self.busy: list[int] = []
        self.prepared = 0

    async def start(self) -> None:
        await self.parent.start()
        await self.prepare(1)

    async def prepare(self, jobs: int) -> None:
        await self.parent.request({"op": "prepare", "n": jobs}, START_TIMEOUT)

    async def start_job(self, room: str) -> float:
        requested = time.monotonic()
        reply = await self.parent.request(
            {"op": "run", "url": self.url, "token": token(f"job-{room}", room), "topic": TOPIC}, JOB_TIMEOUT
        )
        self.busy.append(int(reply["pid"]))
        return requested

    def measured(self) -> ProcessSet:
        return ProcessSet.of(self.busy)

    async def stop(self) -> None:
        self.parent.send_close()
        await self.parent.stop(grace=15.0)


class FloorSystem(System):
    """The SDK alone: one process, one room connection and one AudioStream per job, frames dropped."""

    name = "sdk-floor"

    def __init__(
        self,
        url: str,
        log_dir: Path,
        frame_ms: int,
        publish_topic: str = "",
        single_peer_connection: bool = False,
    ) -> None:
        """`single_peer_connection`: the same connection mode as framepool's jobs in the same run."""
        super().__init__(url, log_dir)
        extra = ["--publish", publish_topic] if publish_topic else []
        if single_peer_connection:
            extra.append("--single-peer-connection")
        if publish_topic:
            self.name = "sdk-floor-data"
        self.floor = Helper(
            "sdk-floor", python_argv("_jobs_floor.py", "--frame-ms", str(frame_ms), *extra), log_dir
        )

    async def start(self) -> None:
        await self.floor.start()
        await self.floor.event("ready", START_TIMEOUT)

    async def start_job(self, room: str) -> float:
        requested = time.monotonic()
        await self.floor.request(
            {"op": "join", "url": self.url, "token": token(f"job-{room}", room), "room": room}, JOB_TIMEOUT
        )
        return requested

    def first_output(self, room: str, loadgen: Helper) -> asyncio.Future[dict[str, Any]]:
        return self.floor.expect("first_frame", room)

    async def output_counts(self, loadgen: Helper) -> dict[str, list[float]]:
        counts: dict[str, list[float]] = (await self.floor.request({"op": "counts"}))["counts"]
        return counts

    def measured(self) -> ProcessSet:
        return ProcessSet.tree(self.floor.pid)

    def supervisor(self) -> ProcessSet | None:
        return ProcessSet.of([self.floor.pid])

    async def stop(self) -> None:
        self.floor.send_close()
        await self.floor.stop(grace=10.0)
