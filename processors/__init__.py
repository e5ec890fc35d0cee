"""framepool's Processor API and built-in processors (imported in workers and, for validation, the
supervisor)."""

from framepool.processors.api import (
    AudioFormat,
    AudioFrame,
    AudioProcessor,
    DataFormat,
    DataProcessor,
    Kind,
    NoParams,
    PixelFormat,
    ProcessContext,
    Processor,
    VideoFormat,
    VideoFrame,
    VideoProcessor,
    frame_bytes,
)
from framepool.processors.kinds import KINDS, InputFormat, MediaKind, kind_of, media_kind
from framepool.processors.registry import (
    ProcessorSpec,
    ResolvedSpec,
    instantiate,
    load_class,
    parse_spec,
    parse_specs,
    resolve,
)
from framepool.processors.resource import WorkerResource

__all__ = [
    "KINDS",
    "AudioFormat",
    "AudioFrame",
    "AudioProcessor",
    "DataFormat",
    "DataProcessor",
    "InputFormat",
    "Kind",
    "MediaKind",
    "NoParams",
    "PixelFormat",
    "ProcessContext",
    "Processor",
    "ProcessorSpec",
    "ResolvedSpec",
    "VideoFormat",
    "VideoFrame",
    "VideoProcessor",
    "WorkerResource",
    "frame_bytes",
    "instantiate",
    "kind_of",
    "load_class",
    "media_kind",
    "parse_spec",
    "parse_specs",
    "resolve",
]
