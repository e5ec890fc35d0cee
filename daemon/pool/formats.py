"""Which streams a set of processors needs, and the size of their rings (supervisor process).

One stream (one SDK stream or offline converter, one ring) carries one input format. `format_groups`
splits the processors attached to one track into as many streams as they have distinct formats, so
processors that want 16 kHz and 48 kHz audio, or RGB24 and I420 video, each get frames in their own
format. Video processors that take the same pixel format but different maximum resolutions share one
stream in the least restrictive size (0, native, in a dimension where any of them takes native frames);
the worker scales the frames down for each processor that asked for less (framepool.worker.scale). Data
processors always share one stream: the largest message and the longest queue any of them declares.

Nothing here constructs a processor: formats come from `input_format(params)`, a classmethod
(framepool.processors.registry.resolve). The supervisor imports processor modules, never runs their
constructors, so a processor that loads a model cannot stall the event loop that holds the rooms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from framepool.errors import ProcessorError
from framepool.processors.api import DataFormat, VideoFormat
from framepool.processors.kinds import InputFormat, MediaKind, RingBudget, kind_of
from framepool.processors.registry import ProcessorSpec, resolve

__all__ = ["FormatGroup", "format_groups", "input_format_of", "ring_slots"]


@dataclass(slots=True)
class FormatGroup:
    """Processors that share one stream, in the format `fmt` (their merged input format)."""

    kind: MediaKind[Any, Any]
    fmt: InputFormat
    specs: list[ProcessorSpec]


def format_groups(specs: list[ProcessorSpec]) -> list[FormatGroup]:
    """One group per distinct input format, in order of first appearance; ProcessorError for bad specs."""
    groups: list[FormatGroup] = []
    for spec in specs:
        resolved = resolve(spec)
        for group in groups:
            merged = _shared(group.fmt, resolved.fmt)
            if merged is not None:
                group.fmt = merged
                group.specs.append(spec)
                break
        else:
            groups.append(FormatGroup(resolved.kind, resolved.fmt, [spec]))
    return groups


def input_format_of(specs: list[ProcessorSpec]) -> InputFormat:
    """The format of one stream carrying all `specs`; ProcessorError if they need more than one stream."""
    if not specs:
        raise ProcessorError("a stream needs at least one processor")
    groups = format_groups(specs)
    if len(groups) > 1:
        first, other = groups[0], groups[1]
        names = f"processors {first.specs[0].name!r} and {other.specs[0].name!r}"
        if first.kind is not other.kind:
            raise ProcessorError(f"{names} mix {first.kind.name} and {other.kind.name} on one stream")
        raise ProcessorError(
            f"{names} need different input formats ({first.fmt} vs {other.fmt}): one stream carries one "
            "format, attach them as separate streams (framepool.pool.format_groups)"
        )
    return groups[0].fmt


def ring_slots(settings: RingBudget, fmt: InputFormat) -> int:
    """Slots of a stream's input ring, per its kind: audio holds `audio_ring_ms` of the processors' frames
    (at least MIN_AUDIO_RING_SLOTS), video `video_ring_slots` frames."""
    return kind_of(fmt).ring_slots(fmt, settings)


def _shared(a: InputFormat, b: InputFormat) -> InputFormat | None:
    """The format one stream can carry for processors declaring `a` and `b`, or None."""
    if a == b:
        return a
    if isinstance(a, VideoFormat) and isinstance(b, VideoFormat) and a.pixel_format == b.pixel_format:
        return VideoFormat(
            pixel_format=a.pixel_format,
            max_width=_least_restrictive(a.max_width, b.max_width),
            max_height=_least_restrictive(a.max_height, b.max_height),
        )
    if isinstance(a, DataFormat) and isinstance(b, DataFormat):
        return DataFormat(
            max_message_bytes=max(a.max_message_bytes, b.max_message_bytes), queue=max(a.queue, b.queue)
        )
    return None


def _least_restrictive(a: int, b: int) -> int:
    return 0 if not a or not b else max(a, b)
