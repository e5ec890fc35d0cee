"""Processors for the tests of the platform pieces the processor library needs: batching across streams
(`end_of_drain`), blobs (`ctx.send_bytes`) and the source's channel count (worker processes, which load them
by spec as `tests.support.platform_procs:Name`; the unit tests call them directly)."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from framepool.processors.api import AudioFormat, AudioFrame, AudioProcessor, NoParams, ProcessContext


class BatchCount(AudioProcessor[NoParams]):
    """Queues every frame in class-wide state, as a batched model would; each `end_of_drain` call emits, on
    every stream that had frames in the batch, how many frames and streams that one call covered and this
    stream's frame seqs; `close` emits how many of its frames were still queued (0 when the runtime called
    `end_of_drain` before closing)."""

    name = "batch-count"
    queued: ClassVar[list[tuple[ProcessContext, int]]] = []
    calls: ClassVar[int] = 0

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        BatchCount.queued.append((ctx, frame.seq))

    @classmethod
    def end_of_drain(cls) -> None:
        batch, BatchCount.queued = BatchCount.queued, []
        BatchCount.calls += 1
        contexts = {id(ctx): ctx for ctx, _ in batch}
        for ctx in contexts.values():
            seqs = [seq for other, seq in batch if other is ctx]
            ctx.emit(
                "batch",
                {"call": BatchCount.calls, "frames": len(batch), "streams": len(contexts), "seqs": seqs},
            )

    def close(self, ctx: ProcessContext) -> None:
        ctx.emit("closed", {"pending": sum(1 for other, _ in BatchCount.queued if other is ctx)})


class BatchFailParams(msgspec.Struct, forbid_unknown_fields=True):
    calls: int = 1_000_000  # end_of_drain calls that raise, from the first


class BatchFail(AudioProcessor[BatchFailParams]):
    """Its `end_of_drain` raises (the first `calls` times); `process` emits every frame's seq."""

    name = "batch-fail"
    failing: ClassVar[int] = 0

    def __init__(self, params: BatchFailParams) -> None:
        super().__init__(params)
        BatchFail.failing = params.calls

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        ctx.emit("frame", frame.seq)

    @classmethod
    def end_of_drain(cls) -> None:
        if BatchFail.failing > 0:
            BatchFail.failing -= 1
            raise RuntimeError("batch failed")


class BlobParams(msgspec.Struct, forbid_unknown_fields=True):
    every: int = 10  # frames between two blobs
    size: int = 100_000  # bytes of each blob
    mime_type: str = "image/jpeg"


def blob_bytes(number: int, size: int) -> bytes:
    """The deterministic content of blob `number` (tests compare what arrives with it)."""
    pattern = bytes((number * 7 + i) % 256 for i in range(256))
    return (pattern * (size // 256 + 1))[:size]


class BlobEmitter(AudioProcessor[BlobParams]):
    """Sends blob n (1, 2, ...) every `every` frames: `blob_bytes(n, size)`, named `blob-<n>`, with an
    attribute `number`."""

    name = "blob-emitter"

    def __init__(self, params: BlobParams) -> None:
        super().__init__(params)
        self.frames = self.sent = 0

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        self.frames += 1
        if self.frames % self.params.every:
            return
        self.sent += 1
        data = blob_bytes(self.sent, self.params.size)
        attributes = {"number": str(self.sent)}
        ctx.send_bytes("blob-emitter", data, name=f"blob-{self.sent}", mime_type=self.params.mime_type,
                       attributes=attributes)  # fmt: skip


class NativeChannels(AudioProcessor[NoParams]):
    """Asks for the source's channel count (`channels=0`) and emits the channels of its first frame."""

    name = "native-channels"

    @classmethod
    def input_format(cls, params: NoParams) -> AudioFormat:
        return AudioFormat(channels=0, frame_ms=20)

    def __init__(self, params: NoParams) -> None:
        super().__init__(params)
        self.seen = False

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if not self.seen:
            self.seen = True
            ctx.emit("channels", {"channels": frame.channels, "shape": list(frame.samples.shape)})
