"""An agent server for the systemd tests, run with `framepool start tests.support.systemd_apps:server`
(the daemon's supervisor process)."""

from __future__ import annotations

import asyncio
import time

from livekit import rtc

from framepool.agent.job import JobContext
from framepool.agent.server import AgentServer

server = AgentServer()


@server.rtc_session()
async def block_or_finish_when_asked(ctx: JobContext) -> None:
    """Runs until a participant sends b"finish". b"block S" makes the job call time.sleep(S) in the
    supervisor's event loop: the realistic bug (blocking I/O in an agent coroutine) the watchdog is for."""
    await ctx.connect()
    asked = asyncio.Event()

    def on_data(packet: rtc.DataPacket) -> None:
        command, _, argument = packet.data.decode().partition(" ")
        if command == "block":
            time.sleep(float(argument))
        elif command == "finish":
            asked.set()

    ctx.room.on("data_received", on_data)
    await ctx.room.local_participant.publish_data(b"running", topic="status")
    await asked.wait()
    ctx.shutdown("asked to finish")
