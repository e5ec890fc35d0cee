"""What `framepool publish` sends: a media file decoded with PyAV, or `testsrc`, a generated tone and test
pattern, as one time-ordered sequence of SDK frames (client process: `framepool publish` is its own
process, no supervisor, no workers).

Both sources are plain iterators of `TimedFrame` (media time in seconds, the frame), pulled one at a time
from a thread by the publisher (decoding must not stall the loop that paces and sends). Audio leaves as
16-bit PCM at 48 kHz, the rate LiveKit's Opus encoder runs at (so the SDK does not resample); video as
I420 (files) or RGB24 (the pattern), at even dimensions, as the SDK's encoders need.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
from livekit import rtc

from framepool.demo.samples import test_pattern_frame, tone_samples
from framepool.errors import InputError

SAMPLE_RATE = 48000
TESTSRC = "testsrc"
# The test pattern repeats every cycle (its square moves during two intervals of it, the tone has a loud
# passage in it), so an endless `testsrc` keeps giving motion and level changes; 440 Hz fills a cycle with
# whole periods, so the tone runs on without a click.
TESTSRC_CYCLE_S = 10
TESTSRC_WIDTH, TESTSRC_HEIGHT, TESTSRC_FPS = 320, 240, 15
TESTSRC_AUDIO_FRAME = SAMPLE_RATE // 100  # 10 ms, what the SDK's audio source works in


@dataclass(frozen=True, slots=True)
class TimedFrame:
    time_s: float  # media time since the start of the first pass
    frame: rtc.AudioFrame | rtc.VideoFrame


@dataclass(frozen=True, slots=True)
class MediaShape:
    """What the tracks are, known before the first frame (the SDK sources need it up front)."""

    channels: int  # 0: no audio
    width: int  # 0: no video
    height: int

    def describe(self) -> str:
        parts = (
            [f"audio {SAMPLE_RATE} Hz {'mono' if self.channels == 1 else 'stereo'}"] if self.channels else []
        )
        if self.width:
            parts.append(f"video {self.width}x{self.height}")
        return ", ".join(parts)


class TestSource:
    """The generated tone and moving test pattern of `framepool.demo.samples`, endless."""

    name = TESTSRC
    shape = MediaShape(channels=1, width=TESTSRC_WIDTH, height=TESTSRC_HEIGHT)

    def frames(self, loop: bool) -> Iterator[TimedFrame]:
        cycle_samples = TESTSRC_CYCLE_S * SAMPLE_RATE
        cycle_frames = TESTSRC_CYCLE_S * TESTSRC_FPS
        sent_samples = video_index = 0
        while True:  # endless: `loop` changes nothing for a generated source
            now = sent_samples / SAMPLE_RATE
            while video_index / TESTSRC_FPS <= now:
                rgb = test_pattern_frame(
                    video_index % cycle_frames, TESTSRC_WIDTH, TESTSRC_HEIGHT, fps=TESTSRC_FPS
                )
                picture = rtc.VideoFrame(
                    TESTSRC_WIDTH, TESTSRC_HEIGHT, rtc.VideoBufferType.RGB24, rgb.tobytes()
                )
                yield TimedFrame(video_index / TESTSRC_FPS, picture)
                video_index += 1
            samples = tone_samples(sent_samples % cycle_samples, TESTSRC_AUDIO_FRAME)
            yield TimedFrame(now, rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, len(samples)))
            sent_samples += TESTSRC_AUDIO_FRAME


class FileSource:
    """The first audio and the first video stream of a media file (anything FFmpeg reads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        with _open(path) as container:
            audio = container.streams.audio[0] if container.streams.audio else None
            video = container.streams.video[0] if container.streams.video else None
            if audio is None and video is None:
                raise InputError(f"{path}: no audio or video stream to publish")
            channels = min(2, audio.codec_context.channels or 1) if audio is not None else 0
            width = (video.codec_context.width or 0) & ~1 if video is not None else 0
            height = (video.codec_context.height or 0) & ~1 if video is not None else 0
        if video is not None and not (width and height):
            raise InputError(f"{path}: the video stream has no picture size")
        self.shape = MediaShape(channels=channels, width=width, height=height)

    def frames(self, loop: bool) -> Iterator[TimedFrame]:
        """Pass after pass with `loop`, each starting where the previous one ended (media time goes on)."""
        offset = 0.0
        while True:
            duration = yield from self._one_pass(offset)
            if not loop or duration <= 0:
                return
            offset += duration

    def _one_pass(self, offset: float) -> Generator[TimedFrame, None, float]:
        """The frames of one pass; returns the pass's duration in seconds."""
        layout = "mono" if self.shape.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="s16", layout=layout, rate=SAMPLE_RATE)
        audio_samples, video_end, start = 0, 0.0, None
        with _open(self.path) as container:
            streams = [*container.streams.audio[:1], *container.streams.video[:1]]
            try:
                for decoded in container.decode(*streams):
                    if not isinstance(decoded, av.AudioFrame | av.VideoFrame):
                        continue
                    time_s = float(decoded.time or 0.0)
                    start = time_s if start is None else start
                    if isinstance(decoded, av.AudioFrame):
                        for pcm in resampler.resample(decoded):
                            yield TimedFrame(offset + audio_samples / SAMPLE_RATE, self._audio(pcm))
                            audio_samples += pcm.samples
                    else:
                        picture = decoded.reformat(self.shape.width, self.shape.height, format="yuv420p")
                        data = picture.to_ndarray().tobytes()  # yuv420p: the three planes, I420's layout
                        yield TimedFrame(offset + time_s - start, self._video(data))
                        rate = float(streams[-1].average_rate or 30)
                        video_end = max(video_end, time_s - start + 1.0 / rate)
            except av.FFmpegError as exc:
                raise InputError(f"{self.path}: cannot decode: {exc}") from None
        return max(video_end, audio_samples / SAMPLE_RATE)

    def _audio(self, pcm: av.AudioFrame) -> rtc.AudioFrame:
        data = pcm.to_ndarray().tobytes()  # s16 packed: interleaved, as the SDK wants it
        return rtc.AudioFrame(data, SAMPLE_RATE, self.shape.channels, pcm.samples)

    def _video(self, data: bytes) -> rtc.VideoFrame:
        return rtc.VideoFrame(self.shape.width, self.shape.height, rtc.VideoBufferType.I420, data)


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise InputError(f"{path}: cannot open: {exc}") from None


def media_source(text: str) -> TestSource | FileSource:
    """`testsrc` or a path; InputError (one line) when the file is missing or holds nothing to publish."""
    return TestSource() if text == TESTSRC else FileSource(Path(text))
