"""The platform pieces of the processor library, live: a processor's `ctx.send_bytes` blob reaches another
participant of the room as a LiveKit byte stream, through the agent server and the loopback dev server."""

from __future__ import annotations

import asyncio

import pytest
from livekit import rtc

from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput
from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from tests.support.agentkit import Signal, agent_settings, quiet_load, serving
from tests.support.platform_procs import blob_bytes
from tests.support.sdk import joined, publish_tone, stop
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration

SIZE = 100_000  # a JPEG's size: seven data packets' worth, so it must go as a byte stream


async def test_a_processor_blob_reaches_a_participant_as_a_byte_stream(
    devserver: DevServer, room_name: str
) -> None:
    attached = Signal()
    server = AgentServer(agent_settings(devserver), load_fnc=quiet_load)

    @server.rtc_session()
    async def blobs(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=False)
        spec = f"tests.support.platform_procs:BlobEmitter(every=20, size={SIZE})"
        ctx.attach(spec, participants=["alice"], output=DataOutput(topic="results"))
        attached.set(ctx)

    received: asyncio.Queue[tuple[rtc.ByteStreamInfo, bytes, str]] = asyncio.Queue()
    readers: set[asyncio.Task[None]] = set()

    def on_stream(reader: rtc.ByteStreamReader, sender: str) -> None:
        async def read() -> None:
            data = b"".join([chunk async for chunk in reader])
            received.put_nowait((reader.info, data, sender))

        task = asyncio.get_running_loop().create_task(read())
        readers.add(task)
        task.add_done_callback(readers.discard)

    async with serving(server), joined(devserver, "bob", room_name) as bob:
        bob.register_byte_stream_handler("blob-emitter", on_stream)
        async with joined(devserver, "alice", room_name) as alice:
            ctx: JobContext = await attached.wait()
            _, feeding = await publish_tone(alice)
            try:
                info, data, sender = await asyncio.wait_for(received.get(), EVENT)
                info2, data2, _ = await asyncio.wait_for(received.get(), EVENT)
            finally:
                await stop(feeding)
    number = int(info.attributes["number"])
    assert data == blob_bytes(number, SIZE)  # the bytes the processor sent, whole
    assert data2 == blob_bytes(number + 1, SIZE) and info2.name == f"blob-{number + 1}"
    assert sender == ctx.agent.identity
    assert (info.name, info.mime_type, info.topic) == (f"blob-{number}", "image/jpeg", "blob-emitter")
    attributes = info.attributes
    assert attributes["participant"] == "alice"
    assert attributes["track"].startswith("TR_")
    assert attributes["processor"] == "tests.support.platform_procs:BlobEmitter"
    assert int(attributes["frame_time_us"]) > 0 and int(attributes["seq"]) == number
