"""`framepool listen --save DIR`: what arrives, kept on disk (client process: `framepool listen` is its own
process, no supervisor, no workers).

- `DIR/results.jsonl`: one line per data packet: receive time, sender identity and kind, packet topic,
  and the message (a result's JSON object as framepool sent it, else the payload as text);
- `DIR/<participant>/<track>.wav`: each subscribed audio track, 48 kHz mono 16-bit, as the SDK hands it;
- `DIR/<participant>/<track>-<frame>.png`: every `frame_every`-th frame of each video track (the first
  one included), so a processed track can be looked at without a player;
- `DIR/bytes/<sender>-<stream id>-<name>`: every byte stream received (the `snapshot` processor's JPEGs).

Names come from identities and track names the room chose, so anything outside [A-Za-z0-9._-] becomes `_`.
"""

from __future__ import annotations

import json
import re
import time
import wave
from pathlib import Path
from typing import IO, Any

import numpy as np
from livekit import rtc

from framepool.errors import ConfigError


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "_"


class ListenArchive:
    """The directory `--save` names, and the files open in it."""

    def __init__(self, directory: Path, frame_every: int) -> None:
        if not directory.is_dir():
            raise ConfigError(f"--save {directory}: no such directory")
        self.directory = directory
        self.frame_every = frame_every
        self._results: IO[str] = (directory / "results.jsonl").open("a", encoding="utf-8")
        self._wavs: dict[str, wave.Wave_write] = {}

    def result(self, sender: str, sender_kind: str, topic: str, message: Any) -> None:
        line = {"time": time.time(), "from": sender, "kind": sender_kind, "topic": topic, "message": message}
        self._results.write(json.dumps(line) + "\n")
        self._results.flush()

    def audio(self, participant: str, track: str, frame: rtc.AudioFrame) -> None:
        key = f"{participant}/{track}"
        writer = self._wavs.get(key)
        if writer is None:
            # Open across many calls, closed in track_ended or close: no with-block can span them.
            writer = wave.open(str(self._track_path(participant, track, ".wav")), "wb")  # noqa: SIM115
            writer.setnchannels(frame.num_channels)
            writer.setsampwidth(2)
            writer.setframerate(frame.sample_rate)
            self._wavs[key] = writer
        writer.writeframes(frame.data.tobytes())

    def video(self, participant: str, track: str, index: int, frame: rtc.VideoFrame) -> None:
        """Frame `index` (from 0) of a video track, kept when it is one of every `frame_every`."""
        if index % self.frame_every:
            return
        import cv2  # only a saving listener pays for OpenCV's import

        rgb = frame.convert(rtc.VideoBufferType.RGB24)
        pixels = np.frombuffer(rgb.data, np.uint8).reshape(rgb.height, rgb.width, 3)
        path = self._track_path(participant, track, f"-{index:06d}.png")
        cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))

    def track_ended(self, participant: str, track: str) -> None:
        writer = self._wavs.pop(f"{participant}/{track}", None)
        if writer is not None:
            writer.close()

    def byte_stream(self, sender: str, stream_id: str, name: str, data: bytes) -> Path:
        folder = self.directory / "bytes"
        folder.mkdir(exist_ok=True)
        path = folder / safe_name(f"{sender}-{stream_id}-{name}")
        path.write_bytes(data)
        return path

    def _track_path(self, participant: str, track: str, suffix: str) -> Path:
        folder = self.directory / safe_name(participant)
        folder.mkdir(exist_ok=True)
        return folder / (safe_name(track) + suffix)

    def close(self) -> None:
        for writer in self._wavs.values():
            writer.close()
        self._wavs.clear()
        self._results.close()
