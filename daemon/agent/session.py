"""A job's room: which tracks feed which processors, and where their results go (supervisor process).

`RoomSession.attach` adds a *rule*: processors, a participant/source filter and outputs. Every remote track
that matches a rule, present or future, gets one `TrackFeed` per distinct input format its processors
declare (framepool.pool.format_groups: processors wanting 16 kHz and 48 kHz audio get two): the SDK's
AudioStream/VideoStream opened in that format (for audio with the frame size the processors declare, since
the supervisor pays per SDK event), and a pool `StreamAttachment` whose ring every frame is pushed into
without blocking (a full ring drops and counts). Results come back through the feed's sink on this event
loop: a `DataOutput` queues them for `publish_data` as `ResultMessage` JSON (one sender task per session,
so a slow data channel never blocks the loop) and blobs (`ctx.send_bytes`) as byte streams on their own
topic (`framepool.agent.bytestreams`), a `TrackOutput` turns output frames into a published audio
or video track.

Every frame is stamped with its arrival time on the supervisor's wall clock (`arrival_time_us`), audio
and video alike, so the results of one participant's tracks line up; results carry it as
`frame_time_us` (the SDK's own video timestamp is libwebrtc's render time on CLOCK_MONOTONIC and the SDK
gives audio none: see `framepool.ipc.slots`).

An AudioFormat with `channels=0` asks for the track's own channel count: 2 when the publication's audio
features include TF_STEREO (what a publisher declares: LiveKit's JS SDK for a stereo microphone or
`forceStereo`; the Rust-based SDKs, this Python one included, declare nothing even for a two-channel
AudioSource, so their tracks count as mono), else 1. The decoded Opus stream itself cannot tell: the SDK's
AudioStream remixes to whatever it is asked for and gives no source channel count.

Video streams are attached to the pool on their first frame, because the ring's slot size depends on the
resolution; a later, larger frame re-attaches with bigger slots (simulcast layers switch resolution).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from livekit import rtc
from livekit.rtc._proto.track_pb2 import AudioTrackFeature  # not exported by livekit.rtc

from framepool.agent.bytestreams import ByteStreamSender
from framepool.agent.outbox import ResultOutbox
from framepool.agent.outputs import BUFFER_TYPES, DataOutput, Output, TrackOutput, TrackPublisher
from framepool.errors import ProcessorError
from framepool.ipc.blobs import Blob, blob_attributes
from framepool.ipc.slots import (
    PIXEL_FORMATS,
    AudioShape,
    OutputFrame,
    VideoShape,
    arrival_time_us,
)
from framepool.pool import FormatGroup, Result, StreamAttachment, StreamSpec, WorkerPool, format_groups
from framepool.pool.results import ResultMessage
from framepool.processors.api import AudioFormat, Kind, VideoFormat, frame_bytes
from framepool.processors.registry import ProcessorSpec, load_class, parse_spec
from framepool.ratelimit import TokenBucket
from framepool.tasks import TaskSet

log = logging.getLogger("framepool.agent.session")

# Slots are never smaller than one 720p frame, so the common resolution changes need no re-attach.
MIN_VIDEO_SLOT = frame_bytes(1280, 720, "RGBA")
_TRACK_KINDS: dict[int, Kind] = {rtc.TrackKind.KIND_AUDIO: "audio", rtc.TrackKind.KIND_VIDEO: "video"}
_SOURCES = {
    "camera": rtc.TrackSource.SOURCE_CAMERA,
    "microphone": rtc.TrackSource.SOURCE_MICROPHONE,
    "screen_share": rtc.TrackSource.SOURCE_SCREENSHARE,
    "screen_share_audio": rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO,
    "unknown": rtc.TrackSource.SOURCE_UNKNOWN,
}


_encode = msgspec.json.Encoder().encode


@dataclass
class Rule:
    """One ctx.attach: processors, which tracks, and where results go."""

    processors: list[ProcessorSpec]
    kind: Kind
    groups: list[FormatGroup]  # one SDK stream and ring per group on every matching track
    participants: frozenset[str] | None
    sources: frozenset[int] | None
    data: DataOutput | None
    track: TrackOutput | None
    feeds: dict[tuple[str, int], TrackFeed] = field(default_factory=dict)  # by (track sid, group index)

    def matches(self, participant: rtc.RemoteParticipant, publication: rtc.RemoteTrackPublication) -> bool:
        if _TRACK_KINDS.get(publication.kind) != self.kind:
            return False
        if self.participants is not None and participant.identity not in self.participants:
            return False
        return self.sources is None or publication.source in self.sources


def make_rule(
    processors: str | ProcessorSpec | Sequence[str | ProcessorSpec],
    participants: Iterable[str] | None,
    sources: Iterable[str] | None,
    output: Output | Sequence[Output] | None,
) -> Rule:
    """Validate an attach request (ProcessorError / ValueError with one line on bad input)."""
    items = [processors] if isinstance(processors, (str, ProcessorSpec)) else list(processors)
    specs = [parse_spec(p) if isinstance(p, str) else p for p in items]
    if not specs:
        raise ValueError("attach needs at least one processor")
    groups = format_groups(specs)
    data = next((g for g in groups if g.kind.name == "data"), None)
    if data is not None:
        raise ProcessorError(f"{data.specs[0].name!r} is a data processor: attach it with ctx.attach_data")
    other = next((g for g in groups if g.kind is not groups[0].kind), None)
    if other is not None:
        raise ProcessorError(
            f"processors {groups[0].specs[0].name!r} and {other.specs[0].name!r} mix "
            f"{groups[0].kind.name} and {other.kind.name} on one stream: attach each kind separately"
        )
    outputs: list[Output] = (
        [] if output is None else [output] if isinstance(output, (DataOutput, TrackOutput)) else list(output)
    )
    silent = next((spec for spec in specs if load_class(spec.name).publishes), None)
    if silent is not None and not any(isinstance(o, TrackOutput) for o in outputs):
        raise ProcessorError(
            f"{silent.name!r} publishes its output as a track: attach it with a TrackOutput "
            "(a declarative agent: publish_video = true or publish_audio = true)"
        )
    source_ids = None
    if sources is not None:
        unknown = [s for s in sources if s not in _SOURCES]
        if unknown:
            raise ValueError(f"unknown track source {unknown[0]!r}: expected one of {', '.join(_SOURCES)}")
        source_ids = frozenset(_SOURCES[s] for s in sources)
    return Rule(
        processors=specs,
        kind=groups[0].kind.name,
        groups=groups,
        participants=None if participants is None else frozenset(participants),
        sources=source_ids,
        data=next((o for o in outputs if isinstance(o, DataOutput)), None),
        track=next((o for o in outputs if isinstance(o, TrackOutput)), None),
    )


class RoomSession:
    """The rules of one job and the feeds they opened in its room."""

    def __init__(self, room: rtc.Room, pool: WorkerPool, job_id: str, room_name: str) -> None:
        self.room = room
        self.pool = pool
        self.job_id = job_id
        self.room_name = room_name
        self.rules: list[Rule] = []
        self.published: list[str] = []  # sids of tracks this session published
        self._outbox: ResultOutbox[tuple[bytes, DataOutput, str]] = ResultOutbox(pool.settings.room_outbox)
        self._tasks = TaskSet(f"room {room_name}", log)  # feeds, their track publishers, closes
        self._sending = TaskSet(f"room {room_name} results", log)  # outlives the feeds: see flush_results
        self._sending.spawn(self._send_results(), name="result sender")
        self.blobs = ByteStreamSender(room, pool.settings.bytes_in_flight)  # ctx.send_bytes
        self.results_sent = 0
        # Monotonic: the job's start (its assignment) and its first frame handed to the pool (metrics).
        self.started_at, self.first_frame_at = time.monotonic(), 0.0
        room.on("track_subscribed", self._on_track_subscribed)
        room.on("track_published", self._on_track_published)
        room.on("track_unsubscribed", self._on_track_gone)

    def attach(self, rule: Rule) -> Rule:
        """Add a rule and open feeds for every matching track already in the room."""
        self.rules.append(rule)
        for participant in self.room.remote_participants.values():
            for publication in participant.track_publications.values():
                if not rule.matches(participant, publication):
                    continue
                if publication.track is not None and publication.subscribed:
                    self._open(rule, participant, publication, publication.track)
                elif not publication.subscribed:
                    publication.set_subscribed(True)
        return rule

    def _on_track_published(
        self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if not publication.subscribed and any(rule.matches(participant, publication) for rule in self.rules):
            publication.set_subscribed(True)

    def _on_track_subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        for rule in self.rules:
            if rule.matches(participant, publication):
                self._open(rule, participant, publication, track)

    def _on_track_gone(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        del track, participant
        for rule in self.rules:
            for key in [key for key in rule.feeds if key[0] == publication.sid]:
                self.spawn(rule.feeds.pop(key).aclose())

    def _open(
        self,
        rule: Rule,
        participant: rtc.RemoteParticipant,
        publication: rtc.RemoteTrackPublication,
        track: rtc.Track,
    ) -> None:
        if (publication.sid, 0) in rule.feeds:
            return
        index = self.rules.index(rule)
        labels = {
            "room": self.room_name,
            "participant": participant.identity,
            "track": publication.sid,
            "source": rtc.TrackSource.Name(publication.source),
            "job": self.job_id,
        }
        channels = 2 if AudioTrackFeature.TF_STEREO in publication.audio_features else 1
        for number, group in enumerate(rule.groups):
            stream_id = f"{self.job_id}/{publication.sid}/{index}" + (f".{number}" if number else "")
            feed = TrackFeed(self, rule, group, stream_id, track, labels, number, channels)
            rule.feeds[(publication.sid, number)] = feed
            feed.start()
            log.info(
                "feeding %s track %s of %s to %s in %s",
                rule.kind,
                publication.sid,
                participant.identity,
                ", ".join(str(p) for p in group.specs),
                group.fmt,
            )

    def queue_result(self, result: Result, feed: TrackFeed) -> None:
        output = feed.rule.data
        if output is None or not feed.rate.allow():
            return
        message = ResultMessage.of(result, feed.labels["participant"], feed.labels["track"])
        self._outbox.put((_encode(message), output, output.topic or result.topic))

    def queue_blob(self, blob: Blob, feed: TrackFeed) -> None:
        """A blob of a feed whose rule sends results to the room: a byte stream on the blob's own topic
        (framepool.agent.bytestreams), to the rule's destinations."""
        output = feed.rule.data
        if output is None or not feed.blob_rate.allow():
            return
        attributes = blob_attributes(blob, feed.labels["participant"], feed.labels["track"])
        self.blobs.put(blob, attributes, output.destinations)

    def queue_event(self, feed: TrackFeed, event: str, processor: str, reason: str = "") -> None:
        """A processor stopped running on a feed: tell the room on the topic its results use (the rule's, or
        the processor's name, which is the built-ins' topic), as JSON {event, processor, participant, track,
        reason}."""
        output = feed.rule.data
        if output is None:
            return
        message = {
            "event": event,
            "processor": processor,
            "participant": feed.labels["participant"],
            "track": feed.labels["track"],
            "reason": reason,
        }
        self._outbox.put((_encode(message), output, output.topic or processor))

    async def _send_results(self) -> None:
        while True:
            payload, output, topic = await self._outbox.get()
            try:
                await self.room.local_participant.publish_data(
                    payload,
                    reliable=output.reliable,
                    destination_identities=list(output.destinations),
                    topic=topic,
                )
                self.results_sent += 1
            except Exception as exc:  # a closed room must not kill the sender; the count shows losses
                log.warning("result not published: %s", exc)
            finally:
                self._outbox.done()

    async def publish_track(
        self, track: rtc.LocalAudioTrack | rtc.LocalVideoTrack, source: rtc.TrackSource.ValueType
    ) -> None:
        publication = await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=source)
        )
        self.published.append(publication.sid)

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task[None]:
        """Run a background task owned by this session (awaited by detach_streams)."""
        return self._tasks.spawn(coroutine, name=name)

    # -- ordered cleanup (JobContext's shutdown ladder calls these in this order) ------------------------

    async def detach_streams(self) -> None:
        """Stop reading tracks and detach from the pool: processors' close() runs, final results arrive."""
        feeds = [feed for rule in self.rules for feed in rule.feeds.values()]
        for rule in self.rules:
            rule.feeds.clear()
        await asyncio.gather(*(feed.aclose() for feed in feeds), self._tasks.wait(), return_exceptions=True)

    async def flush_results(self) -> None:
        """Wait until every queued result went out, then stop the sender."""
        await self._outbox.join()
        await self._sending.aclose()
        await self.blobs.flush()
        await self.blobs.aclose()

    async def unpublish(self) -> None:
        for sid in self.published:
            try:
                await self.room.local_participant.unpublish_track(sid)
            except Exception as exc:  # the room may already be gone; cleanup goes on
                log.debug("unpublish %s: %s", sid, exc)
        self.published.clear()

    def stats(self) -> dict[str, Any]:
        feeds = [feed for rule in self.rules for feed in rule.feeds.values()]
        attachments = [feed.attachment for feed in feeds if feed.attachment is not None]
        return {
            "feeds": len(feeds),
            "results_sent": self.results_sent,
            "results_dropped_outbox": self._outbox.dropped,
            "results_dropped_rate": sum(f.rate.dropped for f in feeds),
            "blobs": msgspec.to_builtins(self.blobs.stats()),
            "blobs_dropped_rate": sum(f.blob_rate.dropped for f in feeds),
            "frames": sum(f.frames for f in feeds),
            "dropped": sum(f.dropped for f in feeds),
            "incidents": sum(sum(a.incidents.values()) for a in attachments),
            "processors_quarantined": sum(len(a.quarantined) for a in attachments),
        }


class TrackFeed:
    """One remote track feeding the processors of one rule that share an input format: SDK stream → ring;
    its sink routes the results."""

    def __init__(
        self,
        session: RoomSession,
        rule: Rule,
        group: FormatGroup,
        stream_id: str,
        track: rtc.Track,
        labels: dict[str, str],
        number: int = 0,  # of the group among the rule's groups: output tracks of later ones get ".N"
        channels: int = 1,  # the track's own (2: its publisher declared stereo), for AudioFormat channels=0
    ) -> None:
        self.session = session
        self.rule = rule
        self.group = group
        self.stream_id = stream_id
        self.track = track
        self.labels = labels
        self.channels = channels
        self.attachment: StreamAttachment | None = None
        self.frames = 0
        self.dropped = 0
        self.rate = TokenBucket(session.pool.settings.result_rate)  # results this feed may send
        self.blob_rate = TokenBucket(session.pool.settings.bytes_rate)  # and blobs
        self._slot = 0
        self._reader: asyncio.Task[None] | None = None
        source = labels["track"] + (f".{number}" if number else "")
        self._output = TrackPublisher(session, rule.track, source) if rule.track else None

    def start(self) -> None:
        self._reader = self.session.spawn(self._read(), name=f"feed {self.stream_id}")

    def _spec(self, max_frame_bytes: int, output_bytes: int) -> StreamSpec:
        return StreamSpec(
            stream_id=self.stream_id,
            kind=self.group.kind.name,
            processors=self.group.specs,
            max_frame_bytes=max_frame_bytes,
            output_max_frame_bytes=output_bytes if self._output else 0,
            labels=self.labels,
        )

    async def _read(self) -> None:
        readers: dict[str, Callable[[Any], Awaitable[None]]] = {
            "audio": self._read_audio,
            "video": self._read_video,
        }
        reader = readers.get(self.group.kind.name)
        if reader is None:
            raise ProcessorError(f"feed {self.stream_id}: no SDK stream for {self.group.kind.name} tracks")
        await reader(self.group.fmt)

    async def _read_audio(self, fmt: AudioFormat) -> None:
        # The stream resamples and remixes to the format, so only the frame length may vary.
        fmt = msgspec.structs.replace(fmt, channels=fmt.channels or self.channels)
        shape = AudioShape(fmt.sample_rate, fmt.channels, fmt.sample_rate * fmt.frame_ms // 1000)
        self.attachment = await self.session.pool.attach(self._spec(shape.nbytes, shape.nbytes), self)
        stream = rtc.AudioStream.from_track(
            track=self.track,
            sample_rate=fmt.sample_rate,
            num_channels=fmt.channels,
            frame_size_ms=fmt.frame_ms,
        )
        push = self.attachment.push
        try:
            async for event in stream:
                frame = event.frame
                if frame.samples_per_channel != shape.samples:
                    shape = AudioShape(fmt.sample_rate, fmt.channels, frame.samples_per_channel)
                ok = push(frame.data.cast("B"), arrival_time_us(), shape)
                self.frames += 1
                self.dropped += not ok
                if self.frames == 1:
                    self.session.first_frame_at = self.session.first_frame_at or time.monotonic()
        finally:
            await stream.aclose()

    async def _read_video(self, fmt: VideoFormat) -> None:
        layout = PIXEL_FORMATS[fmt.pixel_format]
        buffer_type = BUFFER_TYPES[fmt.pixel_format]
        stream = rtc.VideoStream(self.track, format=buffer_type)
        shape: VideoShape | None = None
        try:
            async for event in stream:
                arrived = arrival_time_us()
                frame = event.frame
                if frame.type != buffer_type:
                    frame = frame.convert(buffer_type)
                data = frame.data
                if len(data) > self._slot:
                    await self._reattach(len(data))
                assert self.attachment is not None
                if shape is None or shape.width != frame.width or shape.height != frame.height:
                    shape = VideoShape(layout, frame.width, frame.height)
                ok = self.attachment.push(data, arrived, shape)
                self.frames += 1
                self.dropped += not ok
                if self.frames == 1:
                    self.session.first_frame_at = self.session.first_frame_at or time.monotonic()
        finally:
            await stream.aclose()

    async def _reattach(self, size: int) -> None:
        if self.attachment is not None:
            await self.attachment.detach()
        self._slot = max(size, MIN_VIDEO_SLOT)
        self.attachment = await self.session.pool.attach(self._spec(self._slot, self._slot), self)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.attachment is not None:
            stats = await self.attachment.detach()
            # The figures as fields of the record (a JSON object in json logs), not a repr in the message.
            log.info(
                "feed %s detached: %d frames processed, %d dropped, %d lost, %d results",
                self.stream_id,
                stats.processed,
                stats.dropped,
                stats.lost,
                stats.results,
                extra={"stream_stats": msgspec.to_builtins(stats)},
            )
        if self._output is not None:
            await self._output.aclose()

    # -- StreamSink (called on the event loop by the pool; must not block) --------------------------------

    def on_result(self, result: Result) -> None:
        self.session.queue_result(result, self)

    def on_blob(self, blob: Blob) -> None:
        self.session.queue_blob(blob, self)

    def on_output_frame(self, stream_id: str, frame: OutputFrame) -> None:
        if self._output is not None:
            self._output.frame(frame)

    def on_stream_event(self, stream_id: str, event: str, detail: str) -> None:
        level = logging.INFO if event in ("detached", "worker_restarted") else logging.WARNING
        # Called from the pool's reader, outside the job's tasks: the stream's labels give the context.
        log.log(
            level, "stream %s: %s %s", stream_id, event, detail, extra={"stream": stream_id, **self.labels}
        )
        if event in ("processor_quarantined", "processor_disabled"):
            self.session.queue_event(self, event, *detail.split(": ", 1))
