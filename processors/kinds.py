"""The kinds of stream framepool knows, one entry each (both processes).

Code that used to branch `if audio ... else video` asks this registry instead: what a kind's processors
receive (frame type), what they declare (format type, and the format of one that declares nothing), how
many slots a stream's ring gets and what a realtime ring does when its worker falls behind. Audio refuses
the newest frame (`drop_newest`): what is queued stays continuous, the hole comes at the end of a burst.
Video lets the worker skip to the newest frame (`latest`): a late picture is worth nothing. Data refuses the
newest message (`drop_newest`): what is queued stays in the room's order, and a message is never overwritten
by a later one (each may be a vote or a command).

Code that is specific to one process and one kind (the SDK stream the supervisor opens, the converter the
offline runner uses) keeps it in a table keyed by kind name; a kind such a table lacks is an error there,
never silently "the other kind".

`data` streams carry the room's data messages (`framepool.processors.messages.DataMessage`, the "frame" a
data processor receives) to data processors in the workers. Their format (`DataFormat`) is what the
processors declare: the largest message (the ring's slot size) and the queue (its slots); the ring budget
settings do not apply, since a message has no duration to size a ring by.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from framepool.errors import ProcessorError
from framepool.processors.api import AudioFormat, AudioFrame, DataFormat, Kind, VideoFormat, VideoFrame
from framepool.processors.messages import DataMessage

__all__ = [
    "AUDIO",
    "DATA",
    "KINDS",
    "MIN_AUDIO_RING_SLOTS",
    "VIDEO",
    "InputFormat",
    "MediaKind",
    "PendingKind",
    "RingBudget",
    "kind_of",
    "media_kind",
]

InputFormat = AudioFormat | VideoFormat | DataFormat
RealtimeRing = Literal["drop_newest", "latest"]
FrameT = TypeVar("FrameT", AudioFrame, VideoFrame, DataMessage)
FormatT = TypeVar("FormatT", AudioFormat, VideoFormat, DataFormat)

# Even at long frames a realtime audio ring must absorb a frame being processed plus a burst from the SDK.
MIN_AUDIO_RING_SLOTS = 4


class RingBudget(Protocol):
    """The settings a stream's ring size comes from (framepool.settings.Settings has them)."""

    @property
    def audio_ring_ms(self) -> int: ...

    @property
    def video_ring_slots(self) -> int: ...


@dataclass(frozen=True, slots=True)
class MediaKind(Generic[FrameT, FormatT]):
    """A kind whose streams can be attached."""

    name: Kind
    frame_type: type[FrameT]
    format_type: type[FormatT]
    realtime_ring: RealtimeRing  # what a realtime ring does when the worker falls behind
    slots: Callable[[FormatT, RingBudget], int]
    attachable: ClassVar[bool] = True

    def default_format(self) -> FormatT:
        """The format of a processor of this kind that declares none."""
        return self.format_type()

    def ring_slots(self, fmt: FormatT, budget: RingBudget) -> int:
        """Slots of the input ring of a stream in `fmt`."""
        return self.slots(fmt, budget)


@dataclass(frozen=True, slots=True)
class PendingKind:
    """A kind whose name is known but whose streams cannot be attached yet, and why."""

    name: Kind
    reason: str
    attachable: ClassVar[bool] = False


def _audio_slots(fmt: AudioFormat, budget: RingBudget) -> int:
    """`audio_ring_ms` of the processors' frames, at least MIN_AUDIO_RING_SLOTS."""
    return max(MIN_AUDIO_RING_SLOTS, math.ceil(budget.audio_ring_ms / max(1, fmt.frame_ms)))


def _video_slots(fmt: VideoFormat, budget: RingBudget) -> int:
    del fmt
    return budget.video_ring_slots


def _data_slots(fmt: DataFormat, budget: RingBudget) -> int:
    del budget
    return fmt.queue


AUDIO: MediaKind[AudioFrame, AudioFormat] = MediaKind(
    "audio", AudioFrame, AudioFormat, "drop_newest", _audio_slots
)
VIDEO: MediaKind[VideoFrame, VideoFormat] = MediaKind(
    "video", VideoFrame, VideoFormat, "latest", _video_slots
)
DATA: MediaKind[DataMessage, DataFormat] = MediaKind(
    "data", DataMessage, DataFormat, "drop_newest", _data_slots
)
KINDS: dict[str, MediaKind[Any, Any] | PendingKind] = {kind.name: kind for kind in (AUDIO, VIDEO, DATA)}


def media_kind(name: str) -> MediaKind[Any, Any]:
    """The attachable kind called `name`; ProcessorError for a known kind that is not attachable yet, or
    an unknown one."""
    kind = KINDS.get(name)
    if isinstance(kind, MediaKind):
        return kind
    if kind is None:
        raise ProcessorError(f"unknown stream kind {name!r}: the kinds are {', '.join(KINDS)}")
    raise ProcessorError(f"{name} streams cannot be attached: {kind.reason}")


def kind_of(fmt: InputFormat) -> MediaKind[Any, Any]:
    """The kind whose processors declare formats like `fmt`."""
    for kind in KINDS.values():
        if isinstance(kind, MediaKind) and isinstance(fmt, kind.format_type):
            return kind
    raise ProcessorError(f"{fmt!r} is not the input format of any stream kind")
