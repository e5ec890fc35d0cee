"""What a result becomes on its way out of framepool, live and offline alike (supervisor process)."""

from __future__ import annotations

import msgspec

from framepool.ipc.slots import Result


class ResultMessage(msgspec.Struct, kw_only=True):
    """One result as it leaves framepool, the same schema live and offline: the body of a data message
    (JSON, on the result's topic or the output's) and one line of `framepool process --output`."""

    participant: str  # live: identity of the participant whose track it is about; offline: ""
    track: str  # live: that track's sid; offline: the input stream ("audio0", "video1")
    processor: str
    topic: str  # as the processor emitted it
    # When the frame the result is about reached framepool, in µs: live, the supervisor's wall clock (since
    # the Unix epoch) when the SDK delivered the frame; offline, media time since the start of the input.
    frame_time_us: int
    seq: int  # per processor and track, from 1
    data: msgspec.Raw  # what the processor emitted

    @classmethod
    def of(cls, result: Result, participant: str, track: str) -> ResultMessage:
        return cls(
            participant=participant,
            track=track,
            processor=result.processor,
            topic=result.topic,
            frame_time_us=result.frame_time_us,
            seq=result.seq,
            data=result.data,
        )
