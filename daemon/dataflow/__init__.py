"""Built-in data processors declared in TOML: route, transform, aggregate, moderate, transcripts (supervisor).

Configured in TOML (the `data` table of an `[[agents]]` entry, docs/dataflows-processors.md), compiled once
per agent (`load_dataflow`), instantiated once per job (`CompiledDataflow.pipeline(room_view, ...)`), and
driven by the intake on the supervisor's loop: `Pipeline.process(message)` per received `DataMessage` and
`Pipeline.tick(now)` from a timer, each returning the intents (`framepool.dataflow.intents`) the intake
executes against the room, the bridges and the worker pool.
"""

from framepool.dataflow.config import DataflowConfig
from framepool.dataflow.intents import (
    Intent,
    Participant,
    ParticipantView,
    PublishData,
    RoomServiceAction,
    RoomView,
    SendText,
    SetAttributes,
    StaticRoom,
    ToBridge,
    ToProcessors,
)
from framepool.dataflow.pipeline import CompiledDataflow, Pipeline, load_dataflow

__all__ = [
    "CompiledDataflow",
    "DataflowConfig",
    "Intent",
    "Participant",
    "ParticipantView",
    "Pipeline",
    "PublishData",
    "RoomServiceAction",
    "RoomView",
    "SendText",
    "SetAttributes",
    "StaticRoom",
    "ToBridge",
    "ToProcessors",
    "load_dataflow",
]
