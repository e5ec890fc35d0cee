"""The SDK floor of the jobs benchmark (its own process): what receiving the job's track costs through the SDK alone.

One process holds every job's room connection (one `rtc.Room` per job, as framepool's supervisor does) and
subscribes to the room's audio track with `rtc.AudioStream` at 48 kHz mono and the frame size framepool's
supervisor asks for (`--frame-ms`, from the processor's input format), then does nothing with the frames:
no processing, no ring, no results. Its per-job cost is the livekit SDK's own (WebRTC receive, Opus decode,
one AudioStream event per frame on the same uvloop loop framepool runs on); framepool's per-job cost minus
this one is framepool's own overhead.

Having no results to publish, it counts frames instead: per room, frames x frame_ms / 100 (in units of the
audio job's 100 ms results, so the harness compares the same 10/s rate) and the arrival of the last one; the
first frame of each room is the end of its start latency (event `first_frame`).

Requests: join {url, token, room} -> {}; counts -> {counts: {room: [results-equivalent, arrival of the last]}};
stats -> {rooms, frames}. Events: first_frame {room, t} (CLOCK_MONOTONIC).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

from _jobs_child import emit, serve_requests
from livekit import rtc

from framepool import loop as framepool_loop

SAMPLE_RATE = 48000


class Floor:
    """One room connection per job; every subscribed audio track is read and its frames dropped."""

    def __init__(self, frame_ms: int) -> None:
        self.frame_ms = frame_ms
        self.rooms: dict[str, rtc.Room] = {}
        self.counts: dict[str, list[float]] = {}  # room -> [results-equivalent, monotonic arrival of the last]
        self.readers: set[asyncio.Task[None]] = set()

    async def join(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["room"]
        room = rtc.Room()
        self.counts[name] = [0.0, 0.0]

        def on_track(track: rtc.Track, publication: rtc.RemoteTrackPublication,
                     participant: rtc.RemoteParticipant) -> None:
            if track.kind == rtc.TrackKind.KIND_AUDIO:
                reader = asyncio.create_task(self._read(name, track))
                self.readers.add(reader)
                reader.add_done_callback(self._reader_done)

        room.on("track_subscribed", on_track)
        await room.connect(request["url"], request["token"])
        self.rooms[name] = room
        return {}

    async def _read(self, name: str, track: rtc.Track) -> None:
        counts, share = self.counts[name], self.frame_ms / 100
        stream = rtc.AudioStream.from_track(track=track, sample_rate=SAMPLE_RATE, num_channels=1,
                                            frame_size_ms=self.frame_ms)
        try:
            async for _event in stream:  # the frame is dropped: the floor is the SDK's cost alone
                now = time.monotonic()
                if counts[0] == 0:
                    emit({"event": "first_frame", "room": name, "t": now})
                counts[0] += share
                counts[1] = now
        finally:
            await stream.aclose()

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        self.readers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logging.error("audio reader failed", exc_info=task.exception())

    async def report(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"counts": dict(self.counts)}

    async def stats(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"rooms": len(self.rooms), "readers": len(self.readers)}

    async def aclose(self) -> None:
        for task in list(self.readers):
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await asyncio.wait_for(asyncio.gather(*(room.disconnect() for room in self.rooms.values()),
                                              return_exceptions=True), 10)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frame-ms", type=int, required=True, help="AudioStream frame size (framepool's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    floor = Floor(args.frame_ms)
    emit({"event": "ready"})
    try:
        await serve_requests({"join": floor.join, "counts": floor.report, "stats": floor.stats})
    finally:
        await floor.aclose()


if __name__ == "__main__":
    framepool_loop.run(main(sys.argv[1:]))
