"""Tiny processors and prewarm hooks for the pool's process tests (worker processes, which load them by
spec as `tests.support.procs:Name`)."""

from __future__ import annotations

import mmap
import os
import signal
import struct
import time
from typing import Any

import msgspec

from framepool.ipc.slots import result_slot
from framepool.processors.api import (
    AudioFormat,
    AudioFrame,
    AudioProcessor,
    DataFormat,
    DataProcessor,
    NoParams,
    PixelFormat,
    ProcessContext,
    Processor,
    VideoFormat,
    VideoFrame,
    VideoProcessor,
)
from framepool.processors.messages import DataMessage
from framepool.processors.resource import WorkerResource


class Noop(AudioProcessor[NoParams]):
    """Does nothing: measures the pipeline's own cost."""

    name = "noop"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        pass


class CountParams(msgspec.Struct, forbid_unknown_fields=True):
    every: int = 1


class Count(AudioProcessor[CountParams]):
    """Emits the frame's seq, first sample and gap flag every `every` frames; a summary at close."""

    name = "count"

    def __init__(self, params: CountParams) -> None:
        super().__init__(params)
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


class EchoVideo(VideoProcessor[NoParams]):
    """Publishes every frame back unchanged (copied: the input view dies with the call)."""

    name = "echo-video"

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        ctx.publish_video(frame.data.copy(), frame.width, frame.height, frame.pixel_format)


class FailParams(msgspec.Struct, forbid_unknown_fields=True):
    fail_from: int = 0  # frames before this seq succeed


class Fail(AudioProcessor[FailParams]):
    """Raises for every frame from `fail_from` on."""

    name = "fail"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq >= self.params.fail_from:
            raise ValueError(f"bad frame {frame.seq}")


class HangParams(msgspec.Struct, forbid_unknown_fields=True):
    frame_ms: int = 10


class Hang(AudioProcessor[HangParams]):
    """Never returns from the first frame: an unresponsive worker (which holds that frame's ring slot)."""

    name = "hang"

    @classmethod
    def input_format(cls, params: HangParams) -> AudioFormat:
        return AudioFormat(frame_ms=params.frame_ms)

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        ctx.emit("hanging", frame.seq)  # tests wait for this result, then know the worker is stuck
        while True:
            time.sleep(3600)


class CrashParams(msgspec.Struct, forbid_unknown_fields=True):
    at_seq: int = 1
    pid_file: str = ""  # crash only in the first worker that gets here (the file records it)


class Crash(AudioProcessor[CrashParams]):
    """Kills its own process with SIGKILL at frame `at_seq` (once per pid_file, if given)."""

    name = "crash"

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
    if supervisor_pid is None:  # in a worker, which is not told the supervisor's pid: /proc tells it
        supervisor_pid = _supervisor_chain()[-1] if _parent_is_forkserver() else os.getppid()
    return f"/tmp/framepool-test-prewarm-{supervisor_pid}"


def _parent_is_forkserver() -> bool:
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as file:
        return file.read().startswith(b"framepool: forkserver")  # its title (framepool.proctitle)


def prewarm_raise() -> None:
    raise RuntimeError("model file missing")


class Slow(AudioProcessor[NoParams]):
    """Takes 2 ms per frame: a worker that falls behind a realtime producer."""

    name = "slow"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        time.sleep(0.002)


class SlowVideo(VideoProcessor[NoParams]):
    """Takes 2 ms per video frame and emits the seq it saw."""

    name = "slow-video"

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        time.sleep(0.002)
        ctx.emit("seen", frame.seq)


class LingerAtExit(AudioProcessor[NoParams]):
    """At close, starts a non-daemon thread that never ends: the worker acknowledges shutdown, closes its
    control channel, then hangs in interpreter exit (joining that thread) until it is killed."""

    name = "linger-at-exit"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        pass

    def close(self, ctx: ProcessContext) -> None:
        import threading

        threading.Thread(target=threading.Event().wait, name="lingering", daemon=False).start()


class SizeProbeParams(msgspec.Struct, forbid_unknown_fields=True):
    max_width: int = 0
    max_height: int = 0


class SizeProbe(VideoProcessor[SizeProbeParams]):
    """Declares a maximum resolution; emits the geometry it was given, a digest of the pixels and whether the
    buffer is the same object as the previous frame's (the scaled buffer is reused per stream)."""

    name = "size-probe"

    def __init__(self, params: SizeProbeParams) -> None:
        super().__init__(params)
        self.previous_buffer = 0

    @classmethod
    def input_format(cls, params: SizeProbeParams) -> VideoFormat:
        return VideoFormat(max_width=params.max_width, max_height=params.max_height)

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


class SysExit(AudioProcessor[NoParams]):
    """Calls sys.exit(3) at its first frame: the worker must still exit with its own code (RUNTIME_ERROR)."""

    name = "sys-exit"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        import sys

        sys.exit(3)


class AudioProbeParams(msgspec.Struct, forbid_unknown_fields=True):
    sample_rate: int = 48000
    frame_ms: int = 10
    every: int = 1
    channels: int = 1  # 0: the source's


class AudioProbe(AudioProcessor[AudioProbeParams]):
    """Declares a sample rate and frame size from its parameters; emits what it asked for and what it got
    every `every` frames."""

    name = "audio-probe"

    def __init__(self, params: AudioProbeParams) -> None:
        super().__init__(params)
        self.frames = 0

    @classmethod
    def input_format(cls, params: AudioProbeParams) -> AudioFormat:
        return AudioFormat(sample_rate=params.sample_rate, frame_ms=params.frame_ms, channels=params.channels)

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        self.frames += 1
        if self.frames % self.params.every == 0:
            wanted = {"sample_rate": self.params.sample_rate, "frame_ms": self.params.frame_ms}
            got = {"sample_rate": frame.sample_rate, "samples": frame.samples.shape[0]}
            ctx.emit("probe", {"wanted": wanted, "got": got, "dtype": str(frame.samples.dtype)})


class VideoProbeParams(msgspec.Struct, forbid_unknown_fields=True):
    pixel_format: PixelFormat = "I420"


class VideoProbe(VideoProcessor[VideoProbeParams]):
    """Declares a pixel format from its parameters; emits what it asked for and what it got per frame."""

    name = "video-probe"

    @classmethod
    def input_format(cls, params: VideoProbeParams) -> VideoFormat:
        return VideoFormat(pixel_format=params.pixel_format)

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        ctx.emit(
            "probe",
            {
                "wanted": self.params.pixel_format,
                "got": frame.pixel_format,
                "bytes": frame.data.nbytes,
                "width": frame.width,
                "height": frame.height,
            },
        )


class LegacyFormat(AudioProcessor[NoParams]):
    """Declares its format the old way, as an instance method: the supervisor cannot ask it."""

    name = "legacy-format"

    def input_format(self) -> AudioFormat:  # type: ignore[override]
        return AudioFormat()

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        pass


class DataTap(Processor[Any, NoParams]):
    """Claims the data kind, which is known but not attachable yet."""

    name = "data-tap"
    kind = "data"

    def process(self, frame: Any, ctx: ProcessContext) -> None:
        pass


# -- a per-worker resource and a constructor the supervisor must never run ---------------------------------

CONSTRUCTED_IN: list[int] = []  # pids ModelUser was constructed in, as this process saw them
LOADS: list[int] = []  # pids load_model ran in, as this process saw them


class Model:
    """Stands in for a loaded model: knows where and how many times it was loaded."""

    def __init__(self) -> None:
        LOADS.append(os.getpid())
        self.pid = os.getpid()
        self.serial = len(LOADS)


def release_marker(supervisor_pid: int | None = None) -> str:
    """The file release_model appends to, named after the supervisor (the test reads and removes it)."""
    return prewarm_marker(supervisor_pid).replace("-prewarm-", "-release-")


def release_model(model: Model) -> None:
    """Records where the model was loaded and where it is released."""
    with open(release_marker(), "a") as marker:
        marker.write(f"{model.pid} {os.getpid()}\n")


class ModelUser(AudioProcessor[NoParams]):
    """Uses a per-worker model; its constructor records the process it runs in. Emits, on its first frame,
    the model's identity, where it was loaded, how many loads this process saw, and where it was built."""

    name = "model-user"
    model = WorkerResource(Model, release=release_model)

    def __init__(self, params: NoParams) -> None:
        super().__init__(params)
        CONSTRUCTED_IN.append(os.getpid())
        self.reported = False

    @classmethod
    def input_format(cls, params: NoParams) -> AudioFormat:
        return AudioFormat(frame_ms=20)

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if self.reported:
            return
        self.reported = True
        model = self.model
        ctx.emit(
            "model",
            {
                "id": id(model),
                "loaded_in": model.pid,
                "loads": len(LOADS),
                "constructed_in": CONSTRUCTED_IN[-1],
                "pid": os.getpid(),
            },
        )


def prewarm_model() -> None:
    """A prewarm hook that loads ModelUser's resource at worker start, before any stream attaches."""
    ModelUser.model.get()


def load_missing_model() -> Model:
    raise FileNotFoundError("no model at /nonexistent/model.onnx")


class BrokenModelUser(AudioProcessor[NoParams]):
    """Declares a per-worker resource whose load fails."""

    name = "broken-model-user"
    model = WorkerResource(load_missing_model)

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        pass


class RaiseInInit(AudioProcessor[NoParams]):
    """Its constructor raises, as a processor whose model file is missing does."""

    name = "raise-in-init"

    def __init__(self, params: NoParams) -> None:
        super().__init__(params)
        raise RuntimeError("weights.bin not found")

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        pass


class ForgeSlotParams(msgspec.Struct, forbid_unknown_fields=True):
    slot: str = "result"  # "result" or "output"


class ForgeSlot(AudioProcessor[ForgeSlotParams]):
    """Writes one malformed slot on its first frame, bypassing the codec, as a hostile or broken processor
    could (it runs in the worker, which owns the producer end of the result and output rings)."""

    name = "forge-slot"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq != 1:
            return
        stream = ctx._stream  # type: ignore[attr-defined]
        if self.params.slot == "result":  # names processor 99 of a stream that has one
            stream.writer.ring.write(b"t{}", 1, frame.time_us, 3, 5, 0, stream.index, 99, 1)
        else:  # a video frame in a pixel format that does not exist
            stream.output.write(b"\0" * 16, 1, frame.time_us, 2, 99, 0, 4, 4, 0)


class ForgeIndex(AudioProcessor[NoParams]):
    """On its first frame, writes a well-formed result (with its own stream's key, the one it can know) under
    the index of every other stream its worker might host, as a processor trying to reach another job's
    room would."""

    name = "forge-index"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq != 1:
            return
        stream = ctx._stream  # type: ignore[attr-defined]
        for index in range(1, 9):
            if index != stream.index:
                shape, data = result_slot(index, stream.key, 0, "count", b'{"forged":true}')
                shape.write(stream.writer.ring, data, 1, frame.time_us)


class ScribbleCounters(AudioProcessor[NoParams]):
    """On its third frame, writes absurd values into the counters its worker owns in the stream's input ring
    (tail past the head, frames read and skipped in the quintillions), then exits."""

    name = "scribble-counters"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq != 3:
            return
        fd = ctx._stream.input.fd  # type: ignore[attr-defined]
        with mmap.mmap(fd, os.fstat(fd).st_size) as shared:  # tail, skipped, read: see native/ring.c
            for offset in (128, 256, 264):
                struct.pack_into("<Q", shared, offset, 1 << 62)
        os._exit(3)


class SwallowReplies(AudioProcessor[NoParams]):
    """From its first frame on, its worker never answers a drain or detach request (its control channel drops
    those replies) while it goes on answering pings: a worker that looks alive and ignores requests."""

    name = "swallow-replies"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        channel = ctx._stream.channel  # type: ignore[attr-defined]
        if getattr(channel, "swallowing", False):
            return
        send = channel.send

        def swallow(message: Any) -> None:
            if type(message).__name__ not in ("StreamDrained", "StreamDetached"):
                send(message)

        channel.send, channel.swallowing = swallow, True


class TruncateRings(AudioProcessor[NoParams]):
    """On its first frame, tries to shrink and to grow every framepool memfd its worker holds (found in
    /proc/self/fd, as a hostile processor would), and emits how many it tried and how many refused."""

    name = "truncate-rings"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq != 1:
            return
        tried = refused = 0
        for entry in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{entry}")
            except OSError:
                continue
            if not target.startswith("/memfd:framepool-"):
                continue
            tried += 1
            size = os.fstat(int(entry)).st_size
            outcomes = []
            for new_size in (0, size * 2):
                try:
                    os.ftruncate(int(entry), new_size)
                    outcomes.append(False)
                except PermissionError:
                    outcomes.append(True)
            refused += all(outcomes)
        ctx.emit("truncate", {"tried": tried, "refused": refused})


# -- misbehaving processors for quarantine (tests/process/test_quarantine.py, benchmarks/isolation.py) ----


class StallParams(msgspec.Struct, forbid_unknown_fields=True):
    seconds: float = 5.0  # per frame
    from_seq: int = 1  # frames before this one are quick


class Stall(AudioProcessor[StallParams]):
    """Takes `seconds` on every frame from `from_seq` on: a model stuck on a lock, a blocking call."""

    name = "stall"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq >= self.params.from_seq:
            time.sleep(self.params.seconds)


class ExitCrash(AudioProcessor[NoParams]):
    """os._exit(3) on every frame: a native library calling exit(), or a processor that does."""

    name = "exit-crash"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        os._exit(3)


class Segfault(AudioProcessor[NoParams]):
    """Reads address 0 through ctypes on every frame: a segfault in a native library (SIGSEGV)."""

    name = "segfault"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        import ctypes
        import faulthandler

        faulthandler.disable()  # the default action, not a stack dump: the worker dies of SIGSEGV
        ctypes.string_at(0)


class LeakParams(msgspec.Struct, forbid_unknown_fields=True):
    mb_per_frame: int = 5


class Leak(AudioProcessor[LeakParams]):
    """Keeps `mb_per_frame` MiB of touched memory per frame, forever: a leak."""

    name = "leak"

    def __init__(self, params: LeakParams) -> None:
        super().__init__(params)
        self.kept: list[bytes] = []

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        self.kept.append(b"\x01" * (self.params.mb_per_frame << 20))


class InitFail(AudioProcessor[NoParams]):
    """Raises in its constructor: a processor whose model file is missing."""

    name = "init-fail"

    def __init__(self, params: NoParams) -> None:
        raise FileNotFoundError("no model at /nonexistent/init-fail.onnx")

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        pass


class HeavyVideoParams(msgspec.Struct, forbid_unknown_fields=True):
    ms: float = 25.0


class HeavyVideo(VideoProcessor[HeavyVideoParams]):
    """Takes `ms` of CPU per frame (a face detector) and publishes the frame back (an effect)."""

    name = "heavy-video"

    def process(self, frame: VideoFrame, ctx: ProcessContext) -> None:
        end = time.perf_counter() + self.params.ms / 1000
        while time.perf_counter() < end:
            pass
        ctx.publish_video(frame.data.copy(), frame.width, frame.height, frame.pixel_format)


class FakePongParams(msgspec.Struct, forbid_unknown_fields=True):
    reply: str = "pong"  # or "drained", "detached": a reply to a request that was never sent


class FakePong(AudioProcessor[FakePongParams]):
    """On its first frame, sends the supervisor a reply it never asked for (a pong of sequence 999999, or a
    drain or detach reply), as a processor faking its worker's liveness, or making the supervisor drain its
    rings at will, would."""

    name = "fake-pong"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq == 1:
            from framepool.ipc import control

            index = ctx._stream.index  # type: ignore[attr-defined]
            reply = {
                "pong": control.Pong(seq=999_999),
                "drained": control.StreamDrained(index=index, token=999_999, errors=0, busy={}),
                "detached": control.StreamDetached(index=index, errors=0, busy={}, results_dropped=0),
            }[self.params.reply]
            ctx._stream.channel.send(reply)  # type: ignore[attr-defined]


class CorruptThenExit(AudioProcessor[NoParams]):
    """On its first frame, scribbles an impossible head (a million frames ahead of the tail) into its worker's
    result ring, then exits: the supervisor's drain at the worker's exit meets a corrupt ring."""

    name = "corrupt-then-exit"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq != 1:
            return
        import mmap
        import struct

        fd = ctx._stream.writer.ring.fd  # type: ignore[attr-defined]
        with mmap.mmap(fd, os.fstat(fd).st_size) as shared:
            struct.pack_into("<Q", shared, 64, 1_000_000)
        os._exit(3)


class BurstParams(msgspec.Struct, forbid_unknown_fields=True):
    results: int = 100
    done_fifo: str = ""  # a FIFO this processor writes one byte to once it has emitted everything


class Burst(AudioProcessor[BurstParams]):
    """Emits `results` results on its first frame, then signals `done_fifo`: a test holding the supervisor's
    loop until then knows the results met a result ring nobody drained."""

    name = "burst"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq != 1:
            return
        for index in range(self.params.results):
            ctx.emit("burst", index)
        if self.params.done_fifo:
            with open(self.params.done_fifo, "wb") as fifo:
                fifo.write(b"!")


class HangAtClose(AudioProcessor[NoParams]):
    """Emits once on its first frame, then never returns from close(): a stream whose detach never ends."""

    name = "hang-at-close"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq == 1:
            ctx.emit("running", frame.seq)

    def close(self, ctx: ProcessContext) -> None:
        while True:
            time.sleep(3600)


class HangInInit(AudioProcessor[NoParams]):
    """Its constructor never returns, as one stuck downloading a model does."""

    name = "hang-in-init"

    def __init__(self, params: NoParams) -> None:
        super().__init__(params)
        time.sleep(3600)

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        pass


class FloodControl(AudioProcessor[NoParams]):
    """On its first frame, sends the supervisor 20,000 control messages as fast as it can (a processor
    flooding its worker's control channel)."""

    name = "flood-control"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq != 1:
            return
        from framepool.ipc import control

        stream = ctx._stream  # type: ignore[attr-defined]
        event = control.StreamEvent(
            index=stream.index, event="processor_error", processor="x", detail="", errors=0
        )
        for _ in range(20_000):
            stream.channel.send(event)


# -- hostile processors for the trust boundary (sandbox) --


class EnvProbeParams(msgspec.Struct, forbid_unknown_fields=True):
    secret: str = ""


class EnvProbe(AudioProcessor[EnvProbeParams]):
    """On its first frame, reports what a processor can learn of the supervisor: the names in its
    environment, whether `secret` appears in os.environ or /proc/self/environ, and the supervisor's pid as
    multiprocessing would tell it."""

    name = "env-probe"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq != 1:
            return
        import multiprocessing

        with open("/proc/self/environ", "rb") as file:
            raw = file.read()
        secret = self.params.secret.encode()
        parent = multiprocessing.parent_process()
        ctx.emit(
            "env",
            {
                "names": sorted(os.environ),
                "proc_names": sorted(item.split(b"=", 1)[0].decode() for item in raw.split(b"\0") if item),
                "secret_in_environ": any(self.params.secret in value for value in os.environ.values()),
                "secret_in_proc": secret in raw,
                "livekit_in_proc": b"LIVEKIT_" in raw,
                "parent_pid": None if parent is None else parent.pid,
                "recorded_parent": multiprocessing.current_process()._parent_pid,  # type: ignore[attr-defined]
            },
        )


class TrespassParams(msgspec.Struct, forbid_unknown_fields=True):
    victim: int = 0  # another worker's pid


def _attempt(action: Any) -> str:
    """'ok' or the name of the error an attempt raised."""
    try:
        action()
    except OSError as exc:
        return type(exc).__name__
    return "ok"


def _open_fds(pid: int) -> str:
    """Open every fd of `pid` through /proc (its memfds are its rings); 'ok' if any opened."""
    outcomes = set()
    for fd in range(64):
        try:
            os.close(os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY))
            return "ok"
        except FileNotFoundError:
            continue
        except OSError as exc:
            outcomes.add(type(exc).__name__)
    return ",".join(sorted(outcomes)) or "none"


def _supervisor_chain() -> list[int]:
    """The parent and the grandparent (the supervisor under forkserver), as /proc tells anyone."""
    parent = os.getppid()
    with open(f"/proc/{parent}/status") as file:
        grandparent = int(next(line for line in file if line.startswith("PPid:")).split()[1])
    return [parent, grandparent]


def _unshare_user() -> str:
    """unshare(CLONE_NEWUSER) through libc (os.unshare is Python 3.12+): 'ok' or the errno's name."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) == 0:
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), "?")


class Trespass(AudioProcessor[TrespassParams]):
    """On its first frame, tries what a processor must not be able to do in a sandboxed worker (signal
    the supervisor or a neighbour, read the supervisor's /proc, open a neighbour's rings) and what a worker
    must still do (threads, numpy, signal itself), and emits every outcome."""

    name = "trespass"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq != 1:
            return
        import threading

        import numpy as np

        victim = self.params.victim
        chain = _supervisor_chain()
        thread = threading.Thread(target=lambda: None)
        thread.start()
        thread.join()
        ctx.emit(
            "trespass",
            {
                "uid": os.getuid(),
                "pid": os.getpid(),
                "victim": victim,
                "chain": chain,
                "kill": {str(pid): _attempt(lambda pid=pid: os.kill(pid, 0)) for pid in chain},
                "kill_group": _attempt(lambda: os.kill(0, 0)),
                "kill_victim": _attempt(lambda: os.kill(victim, 0)),
                "kill_self": _attempt(lambda: os.kill(os.getpid(), 0)),
                "environ": {
                    str(pid): _attempt(lambda pid=pid: open(f"/proc/{pid}/environ").close()) for pid in chain
                },
                "fd_dir": {
                    str(pid): _attempt(lambda pid=pid: os.listdir(f"/proc/{pid}/fd")) for pid in chain
                },
                "victim_fds": _open_fds(victim),
                "regain_root": _attempt(lambda: os.setuid(0)),
                "unshare": _unshare_user(),
                "numpy": float(np.dot(np.ones((64, 64)), np.ones((64, 64))).sum()),
                "thread": not thread.is_alive(),
            },
        )


# -- flooding processors for the trust boundary (loop budget) --


class FloodParams(msgspec.Struct, forbid_unknown_fields=True):
    per_frame: int = 2000  # results or output frames per input frame: far more than one loop turn drains
    ring_bell: bool = False  # also write the supervisor's result doorbell after every one, asleep or not


class FloodResults(AudioProcessor[FloodParams]):
    """Emits `per_frame` results per input frame as fast as it can: with 10 ms frames its worker writes
    results without pause (a realtime stream's full result ring drops the rest, counted by the worker)."""

    name = "flood-results"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        bell = ctx._stream.writer.result_bell.event_fd if self.params.ring_bell else -1  # type: ignore[attr-defined]
        for index in range(self.params.per_frame):
            ctx.emit("flood", index)
            if bell >= 0:
                os.eventfd_write(bell, 1)


class FloodOutput(AudioProcessor[FloodParams]):
    """Publishes `per_frame` copies of its input frame on its output audio track per input frame, as fast as
    it can (the stream needs an output ring: output_max_frame_bytes >= 960)."""

    name = "flood-output"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        bell = ctx._stream.writer.result_bell.event_fd if self.params.ring_bell else -1  # type: ignore[attr-defined]
        for _ in range(self.params.per_frame):
            ctx.publish_audio(frame.samples, 48000)
            if bell >= 0:
                os.eventfd_write(bell, 1)


class ControlBurstParams(msgspec.Struct, forbid_unknown_fields=True):
    messages: int = 150  # well under the control rate's burst: the worker is not killed for it
    done_fifo: str = ""  # a FIFO this processor writes one byte to once every message is sent


class ControlBurst(AudioProcessor[ControlBurstParams]):
    """On its first frame, sends `messages` valid StreamEvents back to back on its worker's control channel,
    then signals `done_fifo`: a test holding the supervisor's loop until then knows they all wait in the
    socket at once."""

    name = "control-burst"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        if frame.seq != 1:
            return
        from framepool.ipc import control

        stream = ctx._stream  # type: ignore[attr-defined]
        for number in range(self.params.messages):
            event = control.StreamEvent(
                index=stream.index, event="processor_error", processor="burst", detail=str(number), errors=0
            )
            stream.channel.send(event)
        if self.params.done_fifo:
            with open(self.params.done_fifo, "wb") as fifo:
                fifo.write(b"!")


# -- a data processor (room data messages through the worker pool) ------------------------------------------


class CountMessagesParams(msgspec.Struct, forbid_unknown_fields=True):
    stall_seconds: float = 0.0  # taken on the message whose job seq is `stall_seq` (0: none)
    stall_seq: int = 0
    max_message_bytes: int = 20 * 1024
    queue: int = 64
    label: str = ""  # in every emitted result, to tell two instances apart
    refuse: str = ""  # raise RuntimeError(refuse) in the constructor: a model that is missing


class CountMessages(DataProcessor[CountMessagesParams]):
    """Counts the data messages it receives and emits each one back (its count, what it was, the worker's
    pid) on topic `data-count`; `data-summary` at close. Optionally stalls on one message, so a test can
    kill its worker with a known number of messages in flight."""

    name = "count-messages"

    @classmethod
    def input_format(cls, params: CountMessagesParams) -> DataFormat:
        return DataFormat(max_message_bytes=params.max_message_bytes, queue=params.queue)

    def __init__(self, params: CountMessagesParams) -> None:
        super().__init__(params)
        if params.refuse:
            raise RuntimeError(params.refuse)
        self.count = 0

    def process_message(self, msg: DataMessage, ctx: ProcessContext) -> None:
        self.count += 1
        about = {"kind": msg.kind, "topic": msg.topic, "sender": msg.sender, "text": msg.text()}
        about["label"] = self.params.label
        ctx.emit("data-count", {"count": self.count, "seq": msg.seq, "pid": os.getpid(), **about})
        if self.params.stall_seq and msg.seq == self.params.stall_seq:
            time.sleep(self.params.stall_seconds)

    def close(self, ctx: ProcessContext) -> None:
        ctx.emit("data-summary", {"count": self.count, "label": self.params.label})
