"""Tiny processors and prewarm hooks for the pool's process tests (loaded in workers as `tests.procs:Name`)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import msgspec

from framepool.processors.api import (
    AudioFormat,
    AudioFrame,
    ProcessContext,
    Processor,
    VideoFormat,
    VideoFrame,
)


class Noop(Processor):
    """Does nothing: measures the pipeline's own cost."""

    name = "noop"
    kind = "audio"

    def process(self, frame: Any, ctx: ProcessContext) -> None:
        pass


class CountParams(msgspec.Struct, forbid_unknown_fields=True):
    every: int = 1


class Count(Processor):
    """Emits the frame's seq, first sample and gap flag every `every` frames; a summary at close."""

    name = "count"
    kind = "audio"
    Params = CountParams

    def __init__(self, params: CountParams) -> None:
        super().__init__(params)
        self.params: CountParams = params
        self.frames = 0

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        self.frames += 1
        if self.frames % self.params.every == 0:
            ctx.emit(
                "count",
                {"seq": frame.seq, "first": int(frame.samples[0, 0]), "gap": frame.gap, "pid": os.getpid()},
            )

    def close(self, ctx: ProcessContext) -> None:
        ctx.emit("summary", {"frames": self.frames})


class EchoVideo(Processor):
    """Publishes every frame back unchanged (copied: the input view dies with the call)."""

    name = "echo-video"
    kind = "video"

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        ctx.publish_video(frame.data.copy(), frame.width, frame.height, frame.pixel_format)


class FailParams(msgspec.Struct, forbid_unknown_fields=True):
    fail_from: int = 0  # frames before this seq succeed


class Fail(Processor):
    """Raises for every frame from `fail_from` on."""

    name = "fail"
    kind = "audio"
    Params = FailParams

    def __init__(self, params: FailParams) -> None:
        super().__init__(params)
        self.params: FailParams = params

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq >= self.params.fail_from:
            raise ValueError(f"bad frame {frame.seq}")


class HangParams(msgspec.Struct, forbid_unknown_fields=True):
    frame_ms: int = 10


class Hang(Processor):
    """Never returns from the first frame: an unresponsive worker (which holds that frame's ring slot)."""

    name = "hang"
    kind = "audio"
    Params = HangParams

    def __init__(self, params: HangParams) -> None:
        super().__init__(params)
        self.params: HangParams = params

    def input_format(self) -> AudioFormat:
        return AudioFormat(frame_ms=self.params.frame_ms)

    def process(self, frame: Any, ctx: ProcessContext) -> None:
        ctx.emit("hanging", frame.seq)  # tests wait for this result, then know the worker is stuck
        while True:
            time.sleep(3600)


class CrashParams(msgspec.Struct, forbid_unknown_fields=True):
    at_seq: int = 1
    pid_file: str = ""  # crash only in the first worker that gets here (the file records it)


class Crash(Processor):
    """Kills its own process with SIGKILL at frame `at_seq` (once per pid_file, if given)."""

    name = "crash"
    kind = "audio"
    Params = CrashParams

    def __init__(self, params: CrashParams) -> None:
        super().__init__(params)
        self.params: CrashParams = params

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        params = self.params
        if frame.seq < params.at_seq:
            return
        if params.pid_file:
            try:
                fd = os.open(params.pid_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


def prewarm_ok() -> None:
    """A prewarm hook that succeeds."""


def prewarm_exit() -> None:
    """A prewarm hook that kills the worker: a crash loop at boot."""
    os._exit(1)


def prewarm_slow() -> None:
    """A prewarm hook that outlasts any test's prewarm_timeout."""
    time.sleep(3600)


def prewarm_first_only() -> None:
    """Succeeds in the pool's first worker, kills every later one: a crash loop after a restart.

    The marker file is named after the supervisor; the test that uses this hook removes it.
    """
    try:
        os.close(os.open(prewarm_marker(), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        os._exit(1)


def prewarm_marker(supervisor_pid: int | None = None) -> str:
    import multiprocessing

    if supervisor_pid is None:
        parent = multiprocessing.parent_process()
        supervisor_pid = parent.pid if parent is not None and parent.pid is not None else 0
    return f"/tmp/framepool-test-prewarm-{supervisor_pid}"


def prewarm_raise() -> None:
    raise RuntimeError("model file missing")


class Slow(Processor):
    """Takes 2 ms per frame: a worker that falls behind a realtime producer."""

    name = "slow"
    kind = "audio"

    def process(self, frame: Any, ctx: ProcessContext) -> None:
        time.sleep(0.002)


class SlowVideo(Processor):
    """Takes 2 ms per video frame and emits the seq it saw."""

    name = "slow-video"
    kind = "video"

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        time.sleep(0.002)
        ctx.emit("seen", frame.seq)


class LingerAtExit(Processor):
    """At close, starts a non-daemon thread that never ends: the worker acknowledges shutdown, closes its control
    channel, then hangs in interpreter exit (joining that thread) until it is killed."""

    name = "linger-at-exit"
    kind = "audio"

    def process(self, frame: Any, ctx: ProcessContext) -> None:
        pass

    def close(self, ctx: ProcessContext) -> None:
        import threading

        threading.Thread(target=threading.Event().wait, name="lingering", daemon=False).start()


class SizeProbeParams(msgspec.Struct, forbid_unknown_fields=True):
    max_width: int = 0
    max_height: int = 0


class SizeProbe(Processor):
    """Declares a maximum resolution; emits the geometry it was given, a digest of the pixels and whether the
    buffer is the same object as the previous frame's (the scaled buffer is reused per stream)."""

    name = "size-probe"
    kind = "video"
    Params = SizeProbeParams

    def __init__(self, params: SizeProbeParams) -> None:
        super().__init__(params)
        self.params: SizeProbeParams = params
        self.previous_buffer = 0

    def input_format(self) -> VideoFormat:
        return VideoFormat(max_width=self.params.max_width, max_height=self.params.max_height)

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        import hashlib

        buffer = frame.data.__array_interface__["data"][0]
        ctx.emit(
            "size",
            {
                "width": frame.width,
                "height": frame.height,
                "bytes": frame.data.nbytes,
                "seq": frame.seq,
                "sha256": hashlib.sha256(frame.data.tobytes()).hexdigest(),
                "reused": buffer == self.previous_buffer,
            },
        )
        self.previous_buffer = buffer


class ForgeSlotParams(msgspec.Struct, forbid_unknown_fields=True):
    slot: str = "result"  # "result" or "output"


class ForgeSlot(Processor):
    """Writes one malformed slot on its first frame, bypassing the codec, as a hostile or broken processor
    could (it runs in the worker, which owns the producer end of the result and output rings)."""

    name = "forge-slot"
    kind = "audio"
    Params = ForgeSlotParams

    def __init__(self, params: ForgeSlotParams) -> None:
        super().__init__(params)
        self.params: ForgeSlotParams = params

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq != 1:
            return
        stream = ctx._stream  # type: ignore[attr-defined]
        if self.params.slot == "result":  # names processor 99 of a stream that has one
            stream.writer.ring.write(b"t{}", 1, frame.ts_us, 3, 5, 0, stream.index, 99, 1)
        else:  # a video frame in a pixel format that does not exist
            stream.output.write(b"\0" * 16, 1, frame.ts_us, 2, 99, 0, 4, 4, 0)
