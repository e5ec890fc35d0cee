"""framepool's Processor API and built-in processors (imported in workers and, for validation, the supervisor)."""

from framepool.processors.api import (
    AudioFormat,
    AudioFrame,
    Kind,
    NoParams,
    PixelFormat,
    ProcessContext,
    Processor,
    VideoFormat,
    VideoFrame,
    frame_bytes,
)
from framepool.processors.registry import ProcessorSpec, instantiate, load_class, parse_spec, parse_specs

__all__ = [
    "AudioFormat",
    "AudioFrame",
    "Kind",
    "NoParams",
    "PixelFormat",
    "ProcessContext",
    "Processor",
    "ProcessorSpec",
    "VideoFormat",
    "VideoFrame",
    "frame_bytes",
    "instantiate",
    "load_class",
    "parse_spec",
    "parse_specs",
]
