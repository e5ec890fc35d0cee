"""A declarative agent as the settings describe it: `[[agents]]` tables of the TOML file (supervisor
process; `framepool.settings` holds the list, `framepool.agent.declarative` runs each).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

JobType = Literal["room", "publisher", "participant"]


class AgentSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A declarative agent: registered with LiveKit and run without any Python (TOML `[[agents]]`)."""

    agent_name: Annotated[
        str, Meta(description="Name for explicit dispatch; empty means automatic dispatch.")
    ] = ""
    job_type: Annotated[JobType, Meta(description="room, publisher or participant.")] = "room"
    audio: Annotated[
        list[str],
        Meta(description="Processors for every subscribed audio track, e.g. 'audio-level(window_ms=100)'."),
    ] = []
    video: Annotated[list[str], Meta(description="Processors for every subscribed video track.")] = []
    topic: Annotated[
        str, Meta(description="Data topic the results are published on; empty: each result's own topic.")
    ] = ""
    reliable: Annotated[
        bool, Meta(description="Publish results reliably (ordered, retransmitted) rather than lossy.")
    ] = True
    publish_video: Annotated[bool, Meta(description="Publish processed video frames as a track.")] = False
    publish_audio: Annotated[bool, Meta(description="Publish processed audio frames as a track.")] = False
    participant_identity: Annotated[
        str, Meta(description="Only process tracks of this participant; empty: everyone.")
    ] = ""
    data: Annotated[
        dict[str, Any],
        Meta(description="Data flows of the room (route, transform, aggregate...): docs/dataflows.md."),
    ] = {}
    rpc_methods: Annotated[
        list[str], Meta(description="RPC methods participants may call on the agent (data flows).")
    ] = []
    data_processors: Annotated[
        list[str],
        Meta(
            description="Data processors in the worker pool, 'name = module:Class(key=value)', for routes' "
            "to_processors."
        ),
    ] = []
