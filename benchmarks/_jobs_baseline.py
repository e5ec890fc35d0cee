"""Baseline job of the jobs benchmark (its own process): process-per-job, as LiveKit Agents runs jobs.

One process per job with its own room connection (its own WebRTC stack): it subscribes to the audio
track through `rtc.AudioStream` (48 kHz mono, 10 ms frames, as framepool's supervisor asks for the
audio-level processor), computes RMS and peak per 100 ms window in-process with the same numpy work as
framepool's `audio-level` processor, and publishes each window as a data message shaped like framepool's
results, through one sender task (as framepool's RoomSession does).

The process is prewarmed (imports done, then `ready`), like LiveKit Agents' idle process pool, so the job
start latency measures the job, not the interpreter's start. Requests: run {url, token, topic} -> {}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from typing import Any

import numpy as np
from _jobs_child import emit, serve_requests
from livekit import rtc

SAMPLE_RATE = 48000
WINDOW_SAMPLES = SAMPLE_RATE // 10  # 100 ms
FULL_SCALE = 32768.0


def dbfs(value: float) -> float:
    return -120.0 if value <= 0 else max(-120.0, round(20 * math.log10(value / FULL_SCALE), 2))


class LevelJob:
    """The job: audio level of every audio track in the room, published as data."""

    def __init__(self) -> None:
        self.room = rtc.Room()
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.topic = ""

    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        self.topic = request["topic"]
        self.room.on("track_subscribed", self._on_track)
        await self.room.connect(request["url"], request["token"])
        self._spawn(self._send())
        return {}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _on_track(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._spawn(self._measure(track, publication.sid, participant.identity))

    async def _measure(self, track: rtc.Track, sid: str, identity: str) -> None:
        stream = rtc.AudioStream.from_track(
            track=track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=10
        )
        sum_squares, peak, count, seq, start_us = 0.0, 0, 0, 0, 0
        try:
            async for event in stream:
                samples = np.frombuffer(event.frame.data, dtype=np.int16)
                if count == 0:
                    start_us = time.time_ns() // 1000
                wide = samples.astype(np.int64)
                sum_squares += float(np.dot(wide, wide))
                peak = max(peak, int(np.abs(wide).max()))
                count += wide.size
                if count >= WINDOW_SAMPLES:
                    data = {
                        "rms_dbfs": dbfs(math.sqrt(sum_squares / count)),
                        "peak_dbfs": dbfs(float(peak)),
                        "start_us": start_us,
                        "duration_ms": round(count * 1000 / SAMPLE_RATE, 3),
                    }
                    message = {
                        "participant": identity,
                        "track": sid,
                        "processor": "audio-level",
                        "topic": "audio-level",
                        "frame_time_us": start_us,
                        "seq": seq,
                        "data": data,
                    }
                    self.outbox.put_nowait(json.dumps(message).encode())
                    sum_squares, peak, count, seq = 0.0, 0, 0, seq + 1
        finally:
            await stream.aclose()

    async def _send(self) -> None:
        while True:
            payload = await self.outbox.get()
            try:
                await self.room.local_participant.publish_data(payload, reliable=True, topic=self.topic)
            except Exception as exc:  # a closing room must not end the job's sender
                logging.warning("result not published: %s", exc)

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.wait_for(self.room.disconnect(), 10)


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    job = LevelJob()
    emit({"event": "ready"})
    try:
        await serve_requests({"run": job.run})
    finally:
        await job.aclose()


if __name__ == "__main__":
    asyncio.run(main())
