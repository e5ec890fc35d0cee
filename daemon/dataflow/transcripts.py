"""`[[data.transcripts]]`: a ready route from agents' transcriptions to bridges (supervisor process).

LiveKit agents publish transcriptions as text streams on `lk.transcription`, with stream attributes
`lk.segment_id` (one id per segment), `lk.transcription_final` ("true" / "false") and
`lk.transcribed_track_id` (livekit-agents `types.py`). A delta-mode agent opens a segment's stream with
final "false" and closes it with the trailer attribute final "true"; the SDK merges trailer attributes into
the stream's attributes (`livekit.rtc.data_stream`, on stream close), so the intake, which makes one message
per completed stream, sees the final flag. A non-delta agent sends each interim as its own stream and the
final one last.

By default only final segments go on (interim ones are counted), each segment once: a final message's
`event_id` becomes a name-based UUID (v5) of (room, segment id), so a segment sent twice has one key in
every bridge (one PostgreSQL row; one webhook-id), and a bounded memory of recent segment ids drops repeats
before they reach a spool. Interim segments (`finals_only = false`) keep the intake's event ids, so they
never take a final's key; `key = "event"` keeps the intake's event id for finals too.
"""

from __future__ import annotations

import uuid
from collections import Counter, OrderedDict

import msgspec

from framepool.dataflow.config import TranscriptsConfig, config_error
from framepool.dataflow.envelope import Envelope
from framepool.dataflow.intents import Intent, ToBridge

TOPIC_TRANSCRIPTION = "lk.transcription"
ATTRIBUTE_SEGMENT_ID = "lk.segment_id"
ATTRIBUTE_FINAL = "lk.transcription_final"
ATTRIBUTE_TRACK_ID = "lk.transcribed_track_id"
# The namespace of transcript event ids: uuid5(NAMESPACE, room + "/" + segment id).
NAMESPACE = uuid.UUID("5f0c6a57-6a8e-4d43-9d0c-3f1a2b7e9c11")


def segment_event_id(room: str, segment_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{room}/{segment_id}"))


class Transcripts:
    """A compiled `TranscriptsConfig`."""

    def __init__(self, config: TranscriptsConfig, where: str) -> None:
        if not config.to_bridges:
            raise config_error(where, "to_bridges", [], "at least one bridge sink name")
        if config.remember_segments < 1:
            raise config_error(where, "remember_segments", config.remember_segments, "1 or more")
        self.config = config
        self.name = "transcripts:" + config.name
        self.counters: Counter[str] = Counter()
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __call__(self, envelope: Envelope, out: list[Intent]) -> bool:
        """Append the bridge intents for a transcription; whether the message was one."""
        message = envelope.message
        if message.kind != "text" or message.topic != self.config.topic:
            return False
        counters = self.counters
        counters["matched"] += 1
        final = message.attributes.get(ATTRIBUTE_FINAL, "").lower() == "true"
        if self.config.finals_only and not final:
            counters["interim"] += 1
            return True
        segment = message.attributes.get(ATTRIBUTE_SEGMENT_ID, "")
        if self.config.key == "segment" and final:
            if not segment:
                counters["no_segment_id"] += 1  # delivered under its own event id
            elif self._repeat(segment):
                counters["repeats"] += 1
                return True
            else:
                message = msgspec.structs.replace(message, event_id=segment_event_id(message.room, segment))
        counters["delivered"] += 1
        out.extend(ToBridge(sink=sink, message=message, stage=self.name) for sink in self.config.to_bridges)
        return True

    def _repeat(self, segment: str) -> bool:
        if segment in self._seen:
            self._seen.move_to_end(segment)
            return True
        self._seen[segment] = None
        if len(self._seen) > self.config.remember_segments:
            self._seen.popitem(last=False)
        return False
