"""Agent servers that subprocess tests run with `framepool start tests.support.agent_apps:NAME` (the daemon's
supervisor process)."""

from __future__ import annotations

import asyncio

from livekit import rtc

from framepool.agent.job import JobContext, SharedState
from framepool.agent.server import AgentServer

drain_server = AgentServer()


@drain_server.rtc_session()
async def finish_when_asked(ctx: JobContext) -> None:
    """Keeps the job running until a participant sends b"finish", then says so and ends cleanly."""
    await ctx.connect()
    asked = asyncio.Event()

    def on_data(packet: rtc.DataPacket) -> None:
        if packet.data == b"finish":
            asked.set()

    ctx.room.on("data_received", on_data)
    await ctx.room.local_participant.publish_data(b"running", topic="status")
    await asked.wait()
    await ctx.room.local_participant.publish_data(b"finished", topic="status")
    ctx.shutdown("asked to finish")


endless_server = AgentServer()


@endless_server.rtc_session()
async def run_until_terminated(ctx: JobContext) -> None:
    """A job that never finishes on its own: only the daemon's shutdown (or the server) ends it."""
    await ctx.connect()
    await ctx.room.local_participant.publish_data(b"running", topic="status")
    await asyncio.Event().wait()


def missing_model(shared: SharedState) -> None:
    raise FileNotFoundError("model.onnx")


broken_prewarm_server = AgentServer()
broken_prewarm_server.rtc_session(agent_name="detector", prewarm=missing_model)(run_until_terminated)


lingering_server = AgentServer()


@lingering_server.rtc_session()
async def linger_at_shutdown(ctx: JobContext) -> None:
    """Runs until the room ends; then its shutdown callback lingers until shutdown_timeout cuts it, which
    holds the daemon's stop ladder at "end jobs" for that long."""

    async def linger() -> None:
        await asyncio.Event().wait()

    ctx.add_shutdown_callback(linger)
    await ctx.connect()
    await ctx.room.local_participant.publish_data(b"running", topic="status")
    await asyncio.Event().wait()
