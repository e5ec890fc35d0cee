"""Load generator of the jobs benchmark (its own process): publishers, one per room, and their result
counters.

Each `join` connects a real `livekit` SDK participant to a room and publishes a 48 kHz mono tone in 10 ms
frames (400 Hz, so one precomputed frame repeats seamlessly; `capture_frame` paces it at real time). The
same participant counts the data messages on the results topic that arrive in its room, whoever sends
them (the framepool agent or a baseline job), and reports the first one's arrival as an event: the end of
the job start latency.

Requests: join {url, token, room, topic} -> {}; counts -> {counts: {room: [results, arrival of the last]}, t}.
Events: first_result {room, t} with t on CLOCK_MONOTONIC, which is system-wide, so the harness compares it
with its own clock.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import numpy as np
from _jobs_child import emit, serve_requests
from livekit import rtc

SAMPLE_RATE = 48000
FRAME_SAMPLES = SAMPLE_RATE // 100
TONE_HZ = 400  # a whole number of periods per 10 ms frame


def tone_frame() -> bytes:
    t = np.arange(FRAME_SAMPLES)
    return (10000 * np.sin(2 * np.pi * TONE_HZ * t / SAMPLE_RATE)).astype(np.int16).tobytes()


class Publishers:
    """One SDK participant per room: publishes the tone, counts results."""

    def __init__(self) -> None:
        self.rooms: dict[str, rtc.Room] = {}
        self.counts: dict[str, list[float]] = {}  # room -> [results, monotonic arrival of the last]
        self.feeders: set[asyncio.Task[None]] = set()
        self.frame = tone_frame()

    async def join(self, request: dict[str, Any]) -> dict[str, Any]:
        name, topic = request["room"], request["topic"]
        room = rtc.Room()
        counts = self.counts[name] = [0, 0.0]

        def on_data(packet: rtc.DataPacket) -> None:
            if packet.topic != topic:
                return
            now = time.monotonic()
            if counts[0] == 0:
                emit({"event": "first_result", "room": name, "t": now})
            counts[0] += 1
            counts[1] = now

        room.on("data_received", on_data)
        await room.connect(request["url"], request["token"])
        self.rooms[name] = room
        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("tone", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await room.local_participant.publish_track(track, options)
        feeder = asyncio.create_task(self._feed(source))
        self.feeders.add(feeder)
        feeder.add_done_callback(self._feeder_done)
        return {}

    def _feeder_done(self, task: asyncio.Task[None]) -> None:
        self.feeders.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logging.error("tone feeder failed", exc_info=task.exception())

    async def _feed(self, source: rtc.AudioSource) -> None:
        while True:
            await source.capture_frame(rtc.AudioFrame(self.frame, SAMPLE_RATE, 1, FRAME_SAMPLES))

    async def report(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"counts": dict(self.counts), "t": time.monotonic()}

    async def aclose(self) -> None:
        for task in list(self.feeders):
            task.cancel()
        await asyncio.gather(*self.feeders, return_exceptions=True)
        await asyncio.wait_for(
            asyncio.gather(*(room.disconnect() for room in self.rooms.values()), return_exceptions=True), 10
        )


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    publishers = Publishers()
    try:
        await serve_requests({"join": publishers.join, "counts": publishers.report})
    finally:
        await publishers.aclose()


if __name__ == "__main__":
    asyncio.run(main())
