"""Media files for the offline runner (supervisor process): PyAV decode and conversion in, encode out.

Input frames are converted to exactly what the processors declared (`AudioFormat`, `VideoFormat`), the
same contract the LiveKit SDK fulfils for live tracks, so a processor cannot tell a file from a room:
audio is resampled to s16 at the declared rate and channel count and cut into `frame_ms` frames (the last
one may be shorter); video is converted to I420/RGB24/RGBA and scaled down to fit the declared maximum.
Their frame time is media time: µs since the start of the input, from the decoded frames' presentation
times (audio counts resampled samples from the first frame's time).

Output tracks appear only when a processor publishes its first frame, but a container's streams must all
exist before its header is written. So frames are held back until every stream that may publish has
published once, the input has ended, or the held frames exceed a memory cap; a track that first appears
after the header is written is counted as lost rather than corrupting the file.

The output frame rate is the input's, made one every codec here accepts (`output_rate`): a file whose
average rate has a large denominator (irregular frame times: 3600000/120061 fps) would give a time base
MPEG-4 refuses (denominator above 65535). The encoders are opened once with the chosen rates before any
frame is processed, so an output that cannot be written is one line (exit 2) before the run; an encoder
failing during the run is one warning, after which that file gets no more frames and the run fails, not an
error per frame.
"""

from __future__ import annotations

import contextlib
import fractions
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import msgspec
import numpy as np
import numpy.typing as npt

from framepool.errors import ConfigError, InputError
from framepool.ipc.slots import (
    PIXEL_FORMATS,
    AudioShape,
    FrameShape,
    OutputAudio,
    OutputFrame,
    VideoShape,
)
from framepool.processors.api import AudioFormat, VideoFormat

log = logging.getLogger(__name__)

OUTPUT_CODECS = {
    ".mp4": ("mpeg4", "aac"),
    ".mkv": ("mpeg4", "aac"),
    ".mov": ("mpeg4", "aac"),
    ".webm": ("libvpx", "libopus"),
}
HOLD_BYTES = 64 << 20
MAX_OUTPUT_FPS = 240
MAX_RATE_DENOMINATOR = 1001  # NTSC's 30000/1001 stays exact; MPEG-4 caps the time base's at 65535


def output_rate(rate: fractions.Fraction | None) -> fractions.Fraction:
    """The input's frame rate as one every output codec accepts: within 1..240 fps, the nearest fraction
    with a denominator up to 1001 (30 fps when the input states none)."""
    if not rate or rate <= 0:
        return fractions.Fraction(30)
    bounded = min(max(fractions.Fraction(rate), fractions.Fraction(1)), fractions.Fraction(MAX_OUTPUT_FPS))
    return bounded.limit_denominator(MAX_RATE_DENOMINATOR)


def open_input(path: Path) -> av.container.InputContainer:
    """Open a media file; anything FFmpeg cannot read is one InputError line."""
    try:
        container = av.open(str(path), "r")
    except FileNotFoundError:
        raise InputError(f"input {path} does not exist") from None
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"input {path} cannot be read as media: {_reason(exc)}") from None
    if not (container.streams.audio or container.streams.video):
        container.close()
        raise InputError(f"input {path} has no audio or video stream")
    for stream in container.streams.audio:
        _name_unordered_layout(stream.codec_context)
    return container


DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _name_unordered_layout(codec: Any) -> None:
    """Decode with FFmpeg's default layout for the channel count when the file names none (a WAV without a
    channel mask: "2 channels"). A frame of such a layout, once pushed through one resampler, is refused by
    the next ("Invalid argument"), and an audio stream whose processors want two formats converts each frame
    twice."""
    layout = codec.layout
    default = DEFAULT_LAYOUTS.get(layout.nb_channels)
    if default and all(channel.name == "NONE" for channel in layout.channels):
        codec.layout = default


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def decoded_frames(
    container: av.container.InputContainer,
) -> Iterator[tuple[int, av.AudioFrame | av.VideoFrame]]:
    """(stream index, frame) in file order for every audio and video stream."""
    streams = [*container.streams.audio, *container.streams.video]
    try:
        for packet in container.demux(streams):
            for frame in packet.decode():
                if isinstance(frame, av.AudioFrame | av.VideoFrame):
                    yield packet.stream.index, frame
    except av.FFmpegError as exc:
        raise InputError(f"input {container.name} cannot be decoded: {_reason(exc)}") from None


@dataclass(slots=True)
class ConvertedFrame:
    data: npt.NDArray[Any]  # uint8 pixels or int16 samples, contiguous
    frame_time_us: int  # media time
    shape: FrameShape


class AudioConverter:
    """Resamples to the processors' s16 format and cuts `frame_ms` frames; `channels=0` in the format means
    the input stream's own channel count (`source_channels`), at most 2."""

    def __init__(self, fmt: AudioFormat, source_channels: int = 1) -> None:
        if fmt.channels == 0:
            fmt = msgspec.structs.replace(fmt, channels=min(max(source_channels, 1), 2))
        self.format = fmt
        self.frame_samples = fmt.sample_rate * fmt.frame_ms // 1000
        layout = {1: "mono", 2: "stereo"}.get(fmt.channels)
        if layout is None:
            raise ConfigError(f"audio with {fmt.channels} channels is not supported offline: use 1 or 2")
        self._resampler = av.AudioResampler(
            format="s16", layout=layout, rate=fmt.sample_rate, frame_size=self.frame_samples
        )
        self._origin_us: int | None = None
        self._samples = 0

    @property
    def max_frame_bytes(self) -> int:
        return self.frame_samples * self.format.channels * 2

    def _describe(self) -> str:
        return f"{self.format.sample_rate} Hz, {self.format.channels} channel(s)"

    def convert(self, frame: av.AudioFrame | None) -> list[ConvertedFrame]:
        """Converted frames for `frame` (None flushes the resampler at the end of the input)."""
        if frame is not None and self._origin_us is None:
            self._origin_us = max(0, round((frame.time or 0.0) * 1_000_000))
        out = []
        try:
            resampled_frames = self._resampler.resample(frame)
        except av.FFmpegError as exc:
            raise InputError(f"audio cannot be converted to {self._describe()}: {_reason(exc)}") from None
        for resampled in resampled_frames:
            pcm = resampled.to_ndarray().reshape(-1, self.format.channels)
            ts_us = (self._origin_us or 0) + self._samples * 1_000_000 // self.format.sample_rate
            self._samples += pcm.shape[0]
            shape = AudioShape(self.format.sample_rate, self.format.channels, pcm.shape[0])
            out.append(ConvertedFrame(np.ascontiguousarray(pcm), ts_us, shape))
        return out


def fit_within(width: int, height: int, max_width: int, max_height: int, even: bool) -> tuple[int, int]:
    """Scale (width, height) down, keeping the aspect ratio, to fit the maximum (0: unlimited)."""
    scale = 1.0
    if max_width and width > max_width:
        scale = min(scale, max_width / width)
    if max_height and height > max_height:
        scale = min(scale, max_height / height)
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    if even:  # I420 chroma is subsampled 2x2: keep whole chroma samples
        w, h = max(2, w & ~1), max(2, h & ~1)
    return w, h


class VideoConverter:
    """Converts to the processors' pixel format at a size within their maximum."""

    def __init__(self, fmt: VideoFormat, width: int, height: int, rate: fractions.Fraction | None) -> None:
        layout = PIXEL_FORMATS[fmt.pixel_format]
        self.av_format = layout.ffmpeg
        self.width, self.height = fit_within(
            width, height, fmt.max_width, fmt.max_height, fmt.pixel_format == "I420"
        )
        self.shape = VideoShape(layout, self.width, self.height)
        self.max_frame_bytes = self.shape.nbytes
        self.rate = rate or fractions.Fraction(30)
        self._frames = 0

    def convert(self, frame: av.VideoFrame | None) -> list[ConvertedFrame]:
        if frame is None:
            return []
        ts_us = (
            round(frame.time * 1_000_000)
            if frame.time is not None
            else round(self._frames * 1_000_000 / self.rate)
        )
        self._frames += 1
        picture = frame.reformat(width=self.width, height=self.height, format=self.av_format)
        data = np.ascontiguousarray(picture.to_ndarray()).reshape(-1)
        return [ConvertedFrame(data, max(0, ts_us), self.shape)]


@dataclass(slots=True)
class _Track:
    kind: str
    frames: list[av.AudioFrame | av.VideoFrame] = field(default_factory=list)
    stream: av.VideoStream | av.AudioStream | None = None
    rate: fractions.Fraction = fractions.Fraction(30)
    pts: int = 0
    written: int = 0


class MediaOutput:
    """Writes the processed tracks (frames received from output rings) to one media file."""

    def __init__(self, path: Path, candidates: dict[str, fractions.Fraction | None]) -> None:
        codecs = OUTPUT_CODECS.get(path.suffix.lower())
        if codecs is None:
            raise ConfigError(
                f"cannot write media as {path.suffix or 'a file without extension'}: use "
                f"{', '.join(OUTPUT_CODECS)}"
            )
        self.path, self._codecs = path, codecs
        self._rates = {key: output_rate(rate) for key, rate in candidates.items()}
        self._check_encoders()
        self._tracks: dict[str, _Track] = {}
        self._container: av.container.OutputContainer | None = None
        self._held_bytes = 0
        self.lost_frames = 0
        self.failure = ""  # why the file stopped being written, if it did

    def _check_encoders(self) -> None:
        """Open each encoder once, as the run will (video at each track's rate): ConfigError if one cannot."""
        video, audio = self._codecs
        trials = [(video, rate) for rate in dict.fromkeys(self._rates.values())] + [(audio, None)]
        for codec, rate in trials:
            try:
                context = av.CodecContext.create(codec, "w")
                if rate is None:
                    assert isinstance(context, av.AudioCodecContext)
                    formats = context.codec.audio_formats or ()
                    context.sample_rate, context.layout = 48000, "stereo"
                    if formats:
                        context.format = formats[0]
                else:
                    assert isinstance(context, av.VideoCodecContext)
                    context.width, context.height, context.pix_fmt = 64, 48, "yuv420p"
                    context.time_base, context.framerate = 1 / rate, rate
                context.open()
            except (av.FFmpegError, ValueError) as exc:
                at = f" at {rate} fps" if rate is not None else ""
                raise ConfigError(f"cannot write {self.path}: encoder {codec}{at}: {_reason(exc)}") from None

    def write(self, stream_id: str, output: OutputFrame) -> None:
        """Copy one output frame (its memoryview dies after the call) and encode or hold it."""
        if self.failure:
            self.lost_frames += 1
            return
        try:
            self._write(stream_id, output)
        except (av.FFmpegError, ValueError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.failure = f"{type(exc).__name__}: {_reason(exc)}"
        self.lost_frames += 1
        log.warning("cannot write %s: %s; no further frames are written to it", self.path, self.failure)

    def _write(self, stream_id: str, output: OutputFrame) -> None:
        frame = self._to_av(output)
        track = self._tracks.get(stream_id)
        if track is None:
            if self._container is not None:
                self.lost_frames += 1
                log.warning(
                    "output track of %s started after the file header was written: frame not written",
                    stream_id,
                )
                return
            rate = self._rates.get(stream_id) or output_rate(None)
            kind = "audio" if isinstance(output, OutputAudio) else "video"
            track = self._tracks[stream_id] = _Track(kind, rate=rate)
        if self._container is None:
            track.frames.append(frame)
            self._held_bytes += len(output.data)
            if set(self._tracks) >= set(self._rates) or self._held_bytes > HOLD_BYTES:
                self._start()
        else:
            self._encode(track, frame)

    def frames_written(self) -> dict[str, int]:
        return {key: track.written for key, track in self._tracks.items()}

    def close(self) -> None:
        """Write everything held, flush the encoders, finish the file (an empty file when nothing was
        published)."""
        try:
            if self._container is None:
                if not self._tracks or self.failure:
                    return
                self._start()
            assert self._container is not None
            if not self.failure:
                for track in self._tracks.values():
                    if track.stream is not None:
                        self._container.mux(track.stream.encode(None))
        except (av.FFmpegError, ValueError) as exc:
            self._fail(exc)
        finally:
            if self._container is not None:
                with contextlib.suppress(av.FFmpegError, ValueError):
                    self._container.close()

    def _to_av(self, output: OutputFrame) -> av.AudioFrame | av.VideoFrame:
        if isinstance(output, OutputAudio):
            pcm = np.frombuffer(output.data, np.int16).reshape(1, -1)
            audio = av.AudioFrame.from_ndarray(
                pcm.copy(), format="s16", layout="stereo" if output.channels == 2 else "mono"
            )
            audio.sample_rate = output.sample_rate
            return audio
        layout = PIXEL_FORMATS[output.pixel_format]
        w, h = output.width, output.height
        shape = (h, w, layout.depth) if layout.depth else (h * 3 // 2, w)  # PyAV's shape of planar I420
        pixels = np.frombuffer(output.data, np.uint8).reshape(shape)
        return av.VideoFrame.from_ndarray(pixels.copy(), format=layout.ffmpeg)

    def _start(self) -> None:
        self._container = av.open(str(self.path), "w")
        # Every stream must exist before the first mux writes the header.
        for key in sorted(self._tracks):
            self._tracks[key].stream = self._add_stream(key, self._tracks[key].frames[0])
        for track in self._tracks.values():
            for frame in track.frames:
                self._encode(track, frame)
            track.frames.clear()
        self._held_bytes = 0

    def _add_stream(self, key: str, first: av.AudioFrame | av.VideoFrame) -> av.VideoStream | av.AudioStream:
        assert self._container is not None
        if isinstance(first, av.AudioFrame):
            audio = self._container.add_stream(
                self._codecs[1], rate=first.sample_rate, layout=first.layout.name
            )
            assert isinstance(audio, av.AudioStream)
            audio.time_base = fractions.Fraction(1, first.sample_rate)
            return audio
        video = self._container.add_stream(self._codecs[0], rate=self._tracks[key].rate)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = first.width & ~1, first.height & ~1, "yuv420p"
        video.time_base = 1 / self._tracks[key].rate
        video.codec_context.bit_rate = 2_000_000
        return video

    def _encode(self, track: _Track, frame: av.AudioFrame | av.VideoFrame) -> None:
        assert self._container is not None
        stream = track.stream
        if isinstance(frame, av.VideoFrame) and isinstance(stream, av.VideoStream):
            picture = frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
            picture.pts, picture.time_base = track.pts, 1 / track.rate
            track.pts += 1
            self._container.mux(stream.encode(picture))
        elif isinstance(frame, av.AudioFrame) and isinstance(stream, av.AudioStream):
            frame.pts = track.pts
            track.pts += frame.samples
            self._container.mux(stream.encode(frame))
        else:
            self.lost_frames += 1  # a stream switched between audio and video output: cannot be one track
            return
        track.written += 1
