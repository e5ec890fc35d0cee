"""The SDK floor of the jobs benchmark (its own process): what receiving the job's track costs through the SDK
alone.

One process holds every job's room connection (one `rtc.Room` per job, as framepool's supervisor does, in the
same connection mode: framepool's `single_peer_connection` setting) and subscribes to the room's audio track
with `rtc.AudioStream` at 48 kHz mono and the frame size framepool's supervisor asks for (`--frame-ms`, from
the processor's input format), then does nothing with the frames: no processing, no ring, no results. Its
per-job cost is the livekit SDK's own (WebRTC receive, Opus decode, one AudioStream event per frame on the
same uvloop loop framepool runs on); framepool's per-job cost minus this one is framepool's own overhead.

Its rooms join after `keep_callback_thread_states()`, as framepool's jobs do (the SDK's callback threads
keep their Python thread state instead of building one per event): the floor is the cheapest known way to
hold rooms through the SDK, so that framepool minus the floor stays framepool's own overhead.

Having no results to publish, it counts frames instead: per room, frames x frame_ms / 100 (in units of the
audio job's 100 ms results, so the harness compares the same 10/s rate) and the arrival of the last one; the
first frame of each room is the end of its start latency (event `first_frame`).

`--publish TOPIC` (a diagnostic, not a benchmark system): also publish one small data message per 100 ms
of audio on TOPIC, through one sender task per room as framepool does, to tell the SDK's cost of sending
the results from framepool's own.

Requests: join {url, token, room} -> {}; counts -> {counts: {room: [results-equivalent, arrival of the
last]}}; stats -> {rooms, frames}. Events: first_frame {room, t} (CLOCK_MONOTONIC).
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
from framepool.agent.ffi_threads import keep_callback_thread_states

SAMPLE_RATE = 48000


class Floor:
    """One room connection per job; every subscribed audio track is read and its frames dropped."""

    def __init__(self, frame_ms: int, publish_topic: str = "", single_peer_connection: bool = False) -> None:
        self.frame_ms = frame_ms
        self.options = rtc.RoomOptions(single_peer_connection=single_peer_connection)
        self.publish_topic = publish_topic
        self.rooms: dict[str, rtc.Room] = {}
        self.counts: dict[
            str, list[float]
        ] = {}  # room -> [results-equivalent, monotonic arrival of the last]
        self.readers: set[asyncio.Task[None]] = set()
        self.outboxes: dict[str, asyncio.Queue[bytes]] = {}
        # About the size of an audio-level result message.
        self.payload = (
            b'{"participant":"pub","track":"TR_0000000000","processor":"audio-level","topic":"audio-level",'
            b'"frame_time_us":0,"seq":0,'
            b'"data":{"rms_dbfs":-12.34,"peak_dbfs":-9.87,"start_us":0,"duration_ms":100.0}}'
        )

    async def join(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["room"]
        room = rtc.Room()
        self.counts[name] = [0.0, 0.0]

        def on_track(
            track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
        ) -> None:
            if track.kind == rtc.TrackKind.KIND_AUDIO:
                reader = asyncio.create_task(self._read(name, track))
                self.readers.add(reader)
                reader.add_done_callback(self._reader_done)

        room.on("track_subscribed", on_track)
        keep_callback_thread_states()
        await room.connect(request["url"], request["token"], self.options)
        self.rooms[name] = room
        if self.publish_topic:
            sender = asyncio.create_task(self._send(room, self.outboxes.setdefault(name, asyncio.Queue())))
            self.readers.add(sender)
            sender.add_done_callback(self._reader_done)
        return {}

    async def _send(self, room: rtc.Room, outbox: asyncio.Queue[bytes]) -> None:
        while True:
            payload = await outbox.get()
            await room.local_participant.publish_data(payload, reliable=True, topic=self.publish_topic)

    async def _read(self, name: str, track: rtc.Track) -> None:
        counts, share = self.counts[name], self.frame_ms / 100
        outbox = self.outboxes.get(name)
        stream = rtc.AudioStream.from_track(
            track=track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=self.frame_ms
        )
        try:
            async for _event in stream:  # the frame is dropped: the floor is the SDK's cost alone
                now = time.monotonic()
                if counts[0] == 0:
                    emit({"event": "first_frame", "room": name, "t": now})
                counts[0] += share
                counts[1] = now
                if outbox is not None and int(counts[0]) != int(counts[0] - share):  # one message per 100 ms
                    outbox.put_nowait(self.payload)
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
        await asyncio.wait_for(
            asyncio.gather(*(room.disconnect() for room in self.rooms.values()), return_exceptions=True), 10
        )


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frame-ms", type=int, required=True, help="AudioStream frame size (framepool's)")
    parser.add_argument(
        "--single-peer-connection",
        action="store_true",
        help="join in the SDK's single-peer-connection mode (framepool's jobs do when configured so)",
    )
    parser.add_argument(
        "--publish",
        default="",
        metavar="TOPIC",
        help="diagnostic: also publish one data message per 100 ms of audio per room on TOPIC",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    floor = Floor(args.frame_ms, args.publish, args.single_peer_connection)
    emit({"event": "ready"})
    try:
        await serve_requests({"join": floor.join, "counts": floor.report, "stats": floor.stats})
    finally:
        await floor.aclose()


if __name__ == "__main__":
    framepool_loop.run(main(sys.argv[1:]))
