"""What one agent's connection to LiveKit registers as, needs from the settings, and asks of the agent server
(supervisor process).

`Registration` is the agent's identity on the `/agent` websocket, `ConnectionOptions` the settings a
connection needs (taken from `Settings`, never defaulted twice), `JobHost` what `AgentConnection` calls on
the agent server, and `DaemonStatus` what UpdateWorkerStatus reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from livekit.protocol import agent as agent_pb
from livekit.protocol import models

from framepool.settings import Settings

if TYPE_CHECKING:
    from framepool.agent.connection import AgentConnection

# The agent protocol's keep-alive period (WorkerPing).
PING_INTERVAL = 5.0


class JobHost(Protocol):
    """What the connection asks of the agent server (shared by every agent's connection)."""

    async def on_availability(
        self, connection: AgentConnection, request: agent_pb.AvailabilityRequest
    ) -> agent_pb.AvailabilityResponse:
        """Decide on a job offer; an available answer must reserve a slot (released on assignment timeout)."""
        ...

    def on_assignment_timeout(self, connection: AgentConnection, job_id: str) -> None: ...

    async def on_assignment(
        self, connection: AgentConnection, assignment: agent_pb.JobAssignment
    ) -> None: ...

    def on_termination(self, connection: AgentConnection, job_id: str) -> None: ...

    def live_jobs(self, connection: AgentConnection) -> list[agent_pb.Job]:
        """The jobs of this connection still running, reported after a reconnect."""
        ...

    def worker_status(self) -> DaemonStatus:
        """The whole daemon's status, the same on every agent's connection."""
        ...


class DaemonStatus(NamedTuple):
    """What UpdateWorkerStatus reports: FULL or not, load 0..1, running jobs, draining (SIGTERM received)."""

    full: bool
    load: float
    jobs: int
    draining: bool


def default_permissions() -> models.ParticipantPermission:
    """An agent's participant permissions unless it says otherwise, as livekit-agents' defaults: subscribe,
    publish, publish data, update its own metadata and attributes (`ctx.outputs.set_attributes`)."""
    return models.ParticipantPermission(
        can_subscribe=True, can_publish=True, can_publish_data=True, can_update_metadata=True, agent=True
    )


@dataclass(frozen=True, kw_only=True)
class Registration:
    """What one agent registers as."""

    job_type: agent_pb.JobType = agent_pb.JT_ROOM
    agent_name: str = ""
    permissions: models.ParticipantPermission = field(default_factory=default_permissions)
    version: str = ""
    namespace: str = ""


@dataclass(frozen=True, kw_only=True)
class ConnectionOptions:
    """What a connection needs from the settings; no defaults here: `from_settings` is the one source."""

    url: str
    api_key: str
    api_secret: str
    status_interval: float
    assignment_timeout: float
    max_retry: int
    # The agent protocol's keep-alive (WorkerPing), not the `ping_interval` setting (the pool's worker pings).
    keepalive_interval: float = PING_INTERVAL

    @classmethod
    def from_settings(cls, settings: Settings, url: str) -> ConnectionOptions:
        """The options of `settings`, for the websocket `url` (the settings' livekit_url in ws:// form)."""
        return cls(
            url=url,
            api_key=settings.api_key,
            api_secret=settings.api_secret,
            status_interval=settings.status_interval,
            assignment_timeout=settings.assignment_timeout,
            max_retry=settings.max_retry,
        )


def ws_url(url: str) -> str:
    """The websocket form of a LiveKit URL (the settings accept http(s):// as LiveKit's own tools do)."""
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    return url


def http_url(url: str) -> str:
    """The HTTP form of a LiveKit URL, for the server APIs (RoomService, AgentDispatchService)."""
    url = ws_url(url)
    if url.startswith("ws://"):
        return "http://" + url[len("ws://") :]
    return "https://" + url[len("wss://") :] if url.startswith("wss://") else url
