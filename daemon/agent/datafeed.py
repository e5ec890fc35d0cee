"""A job's data processors in the worker pool: one data stream, the room's messages in, results out to the
room (supervisor process).

`JobContext.attach_data` makes a `DataFeed`: named data processors (`DataProcessor` subclasses) attached to
the pool as one data stream (`StreamSpec` of kind "data", one ring, one worker). `send(message, names)` is
the hot path, called on the loop that holds the rooms by a data flow's route (`to_processors`,
`framepool.agent.dataplane`) or by an agent's own consumer (`ctx.receive_data(feed.send)`): one msgpack
encoding and one ring write whose slot names the processors the message is for (`framepool.ipc.slots`),
never a wait. A message larger than the stream's slot is refused (`oversize`), a full ring refuses the
newest (`dropped`, counted by the ring), a message sent while its worker is being replaced is `lost`; each
call says whether the message went in, and every refusal is counted.

When the hosting worker dies the pool re-attaches the stream to the replacement with fresh processor
instances (their state is gone); the messages the dead worker held are counted `lost`, exactly
(`framepool.pool.stream`), and later messages reach the new instances.

Results (`ctx.emit` in a data processor) leave as the other processors' do: `ResultMessage` JSON published on
the output's topic (or the result's own), at most `result_rate` per second per feed, through the job's room
outputs (`ctx.outputs`: bounded, never blocking). A data result has no track: `participant` and `track` are
empty, `frame_time_us` is the `received_us` of the message being handled. Blobs (`ctx.send_bytes`) leave as
byte streams through the room's `ByteStreamSender` (framepool.agent.bytestreams).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from framepool.agent.bytestreams import ByteStreamSender
from framepool.agent.outputs import DataOutput
from framepool.agent.room_outputs import RoomOutputs
from framepool.errors import ProcessorError
from framepool.ipc.blobs import Blob, blob_attributes
from framepool.ipc.slots import MAX_DATA_PROCESSORS, OutputFrame, data_slot
from framepool.pool import Result, StreamAttachment, StreamSpec, WorkerPool, input_format_of
from framepool.pool.results import ResultMessage
from framepool.processors.api import DataFormat
from framepool.processors.messages import DataMessage
from framepool.processors.registry import ProcessorSpec, parse_spec, resolve
from framepool.ratelimit import TokenBucket

log = logging.getLogger("framepool.agent.datafeed")
_encode = msgspec.json.Encoder().encode

DataProcessors = str | ProcessorSpec | Sequence[str | ProcessorSpec] | Mapping[str, str | ProcessorSpec]


def named_specs(processors: DataProcessors) -> dict[str, ProcessorSpec]:
    """Data processors by the name routes use: a mapping's keys, else each spec's name; every one resolved
    (imported, parameters validated) and checked to be a data processor. ProcessorError / ValueError."""
    if isinstance(processors, Mapping):
        items = [(name, parse_spec(p) if isinstance(p, str) else p) for name, p in processors.items()]
    else:
        listed = [processors] if isinstance(processors, (str, ProcessorSpec)) else list(processors)
        specs = [parse_spec(p) if isinstance(p, str) else p for p in listed]
        items = [(spec.name, spec) for spec in specs]
    if not items:
        raise ValueError("attach_data needs at least one data processor")
    if len(items) > MAX_DATA_PROCESSORS:
        raise ValueError(f"{len(items)} data processors on one stream: at most {MAX_DATA_PROCESSORS}")
    named: dict[str, ProcessorSpec] = {}
    for name, spec in items:
        if not name or name in named:
            raise ValueError(f"data processor name {name!r} is empty or given twice")
        kind = resolve(spec).kind.name
        if kind != "data":
            raise ProcessorError(
                f"processor {spec.name!r} takes {kind}, not data: attach it with ctx.attach, not attach_data"
            )
        named[name] = spec
    return named


class DataStats(msgspec.Struct, frozen=True, kw_only=True):
    sent: int  # messages offered to send() for at least one of its processors
    oversize: int  # refused: larger than the stream's slot (DataFormat.max_message_bytes)
    dropped: int  # refused by the full ring
    lost: int  # died with a worker, or sent while it was being replaced
    processed: int  # handed to the processors by the worker
    results: int  # results the processors emitted that reached the supervisor
    results_dropped_rate: int  # results over result_rate, not published


class DataFeed:
    """One `attach_data`: its processors' data stream and where their results go (module docstring)."""

    def __init__(
        self,
        pool: WorkerPool,
        processors: Mapping[str, ProcessorSpec],
        stream_id: str,
        labels: Mapping[str, str],
        outputs: RoomOutputs,
        output: DataOutput,
        blobs: ByteStreamSender | None = None,
    ) -> None:
        self.pool = pool
        self.names = list(processors)
        self.specs = list(processors.values())
        self.stream_id = stream_id
        self.labels = dict(labels)
        self.outputs = outputs
        self.output = output
        self.attachment: StreamAttachment | None = None
        self.rate = TokenBucket(pool.settings.result_rate)
        self.blobs = blobs  # the room's byte streams (framepool.agent.bytestreams); None: blobs dropped
        self.blob_rate = TokenBucket(pool.settings.bytes_rate)
        self.oversize = 0
        self._bits = {name: 1 << index for index, name in enumerate(self.names)}
        self._all = (1 << len(self.names)) - 1
        self._slot_bytes = 0

    async def open(self) -> None:
        """Attach the stream: once this returns, the processors run in a worker (constructed there)."""
        fmt = input_format_of(self.specs)
        assert isinstance(fmt, DataFormat)  # named_specs checked the kind
        self._slot_bytes = fmt.max_message_bytes
        spec = StreamSpec(
            stream_id=self.stream_id,
            kind="data",
            processors=self.specs,
            max_frame_bytes=fmt.max_message_bytes,
            labels=self.labels,
        )
        self.attachment = await self.pool.attach(spec, self)

    def targets(self, names: Iterable[str]) -> int:
        """The bit set of the named processors of this feed (names it does not have are ignored)."""
        bits = 0
        for name in names:
            bits |= self._bits.get(name, 0)
        return bits

    def send(self, message: DataMessage, processors: Iterable[str] | None = None) -> bool:
        """Hand `message` to the named processors (default: all of them); False if it was refused (counted).
        Never blocks; a `ctx.receive_data` consumer as it stands."""
        targets = self._all if processors is None else self.targets(processors)
        attachment = self.attachment
        if not targets or attachment is None:
            return False
        shape, data = data_slot(message, targets)
        if len(data) > self._slot_bytes:
            self.oversize += 1
            return False
        return attachment.push(data, message.received_us, shape)

    # -- StreamSink (called on the event loop by the pool; must not block) --------------------------------

    def on_result(self, result: Result) -> None:
        if not self.rate.allow():
            return
        message = ResultMessage.of(result, "", "")
        self._publish(_encode(message), self.output.topic or result.topic)

    def on_output_frame(self, stream_id: str, frame: OutputFrame) -> None:
        del stream_id, frame  # a data stream has no output ring: nothing arrives here

    def on_blob(self, blob: Blob) -> None:
        if self.blobs is not None and self.blob_rate.allow():
            self.blobs.put(blob, blob_attributes(blob, "", ""), self.output.destinations)

    def on_stream_event(self, stream_id: str, event: str, detail: str) -> None:
        level = logging.INFO if event in ("detached", "worker_restarted") else logging.WARNING
        # Called from the pool's reader, outside the job's tasks: the stream's labels give the context.
        log.log(
            level,
            "data stream %s: %s %s",
            stream_id,
            event,
            detail,
            extra={"stream": stream_id, **self.labels},
        )
        if event in ("processor_quarantined", "processor_disabled"):
            processor, _, reason = detail.partition(": ")
            body = {"event": event, "processor": processor, "participant": "", "track": "", "reason": reason}
            self._publish(_encode(body), self.output.topic or processor)

    def _publish(self, payload: bytes, topic: str) -> None:
        try:
            self.outputs.publish_data(
                payload, topic=topic, reliable=self.output.reliable, destinations=self.output.destinations
            )
        except ValueError as exc:  # over LiveKit's packet limit: the processor's to fix, logged
            log.warning("data stream %s: result not published: %s", self.stream_id, exc)

    # -- end and figures --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Detach: the processors' close() runs and their last results are published."""
        if self.attachment is None:
            return
        await self.attachment.detach()
        figures = self.stats()
        log.info(
            "data stream %s detached: %d messages processed, %d dropped, %d oversize, %d lost, %d results",
            self.stream_id,
            figures.processed,
            figures.dropped,
            figures.oversize,
            figures.lost,
            figures.results,
            extra={"data_stats": msgspec.to_builtins(figures)},
        )

    def stats(self) -> DataStats:
        stream = self.attachment.stats() if self.attachment is not None else None
        return DataStats(
            sent=(stream.pushed if stream else 0) + self.oversize,
            oversize=self.oversize,
            dropped=stream.dropped if stream else 0,
            lost=stream.lost if stream else 0,
            processed=stream.processed if stream else 0,
            results=stream.results if stream else 0,
            results_dropped_rate=self.rate.dropped,
        )
