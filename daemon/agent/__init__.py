"""framepool's agent server API (supervisor process): register with LiveKit, take jobs, feed room media to the
worker pool.

    from framepool.agent import AgentServer, JobContext, DataOutput

    server = AgentServer()

    @server.rtc_session(agent_name="meter")
    async def entrypoint(ctx: JobContext) -> None:
        await ctx.connect()
        ctx.attach("audio-level(window_ms=100)", output=DataOutput(topic="levels"))

Run it with `framepool start mymodule:server` (production) or `framepool dev mymodule:server`.
"""

from framepool.agent.job import JobContext, JobRequest, RunningJob
from framepool.agent.outputs import DataOutput, TrackOutput
from framepool.agent.server import Agent, AgentServer, pool_load

__all__ = [
    "Agent",
    "AgentServer",
    "DataOutput",
    "JobContext",
    "JobRequest",
    "RunningJob",
    "TrackOutput",
    "pool_load",
]
