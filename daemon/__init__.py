"""framepool: a LiveKit agent server whose supervisor holds the rooms and whose CPU-pinned workers process
frames from shared-memory rings (imported by both processes).

The public API in one import, the way `from livekit.agents import ...` works:

    from framepool import AgentServer, DataOutput, JobContext, JobRequest, TrackOutput
    from framepool import AudioFrame, Processor, VideoFrame

The names are resolved on first use (PEP 562): a worker process imports `framepool` too, and must not load
the LiveKit SDK (its native library and threads) just because the package was imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framepool.agent import AgentServer, DataOutput, JobContext, JobRequest, TrackOutput
    from framepool.processors.api import (
        AudioFormat,
        AudioFrame,
        AudioProcessor,
        DataFormat,
        DataProcessor,
        NoParams,
        ProcessContext,
        Processor,
        VideoFormat,
        VideoFrame,
        VideoProcessor,
    )
    from framepool.processors.messages import DataMessage
    from framepool.processors.resource import WorkerResource

__version__ = "0.1.0"

_PUBLIC = {
    "AgentServer": "framepool.agent",
    "DataOutput": "framepool.agent",
    "JobContext": "framepool.agent",
    "JobRequest": "framepool.agent",
    "TrackOutput": "framepool.agent",
    "AudioFormat": "framepool.processors.api",
    "AudioFrame": "framepool.processors.api",
    "AudioProcessor": "framepool.processors.api",
    "DataFormat": "framepool.processors.api",
    "DataMessage": "framepool.processors.messages",
    "DataProcessor": "framepool.processors.api",
    "NoParams": "framepool.processors.api",
    "ProcessContext": "framepool.processors.api",
    "Processor": "framepool.processors.api",
    "VideoFormat": "framepool.processors.api",
    "VideoFrame": "framepool.processors.api",
    "VideoProcessor": "framepool.processors.api",
    "WorkerResource": "framepool.processors.resource",
}

__all__ = [
    "AgentServer",
    "AudioFormat",
    "AudioFrame",
    "AudioProcessor",
    "DataFormat",
    "DataMessage",
    "DataOutput",
    "DataProcessor",
    "JobContext",
    "JobRequest",
    "NoParams",
    "ProcessContext",
    "Processor",
    "TrackOutput",
    "VideoFormat",
    "VideoFrame",
    "VideoProcessor",
    "WorkerResource",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'framepool' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
