"""Agents from the TOML config (`[[agents]]`, `Settings.agents`): no Python needed (supervisor process).

Each `AgentSpec` becomes an `Agent` whose entrypoint joins the room without auto-subscription (only the
tracks its processors need are subscribed), attaches its audio and video processors with its outputs, and
then lives as long as the room. For participant and publisher jobs only the job's participant is processed.
Its `data` table (route, transform, aggregate, moderate, transcripts: `framepool.dataflow`) runs on every
data event of the room; its routes' `to_processors` name the agent's `data_processors` ("name = spec"),
which run in the worker pool (`ctx.attach_data`). Processor specs, data flows and the names routes send to
are validated when the agents are built, so a typo fails `framepool start` at once.
"""

from __future__ import annotations

import re

from livekit.protocol import agent as agent_pb

from framepool.agent.datafeed import named_specs
from framepool.agent.job import JobContext
from framepool.agent.outputs import DataOutput, Output, TrackOutput
from framepool.agent.server import Agent
from framepool.agent.session import make_rule
from framepool.dataflow.pipeline import CompiledDataflow, load_dataflow
from framepool.errors import ConfigError, ProcessorError
from framepool.processors.registry import ProcessorSpec, parse_spec
from framepool.settings import AgentSpec

_NAMED = re.compile(r"^\s*(?P<name>[A-Za-z0-9_.\-]+)\s*=\s*(?P<spec>.+)$", re.S)


def build_agents(specs: list[AgentSpec]) -> list[Agent]:
    """One Agent per spec; ConfigError naming the agent when a processor spec is bad."""
    if not specs:
        raise ConfigError(
            "no agents configured: add [[agents]] tables to the config file, or pass module:server"
        )
    return [_build(index, spec) for index, spec in enumerate(specs)]


def check_agents(specs: list[AgentSpec]) -> tuple[list[Agent], list[str]]:
    """`framepool config --check`: the agents that build, and one line per problem of the others."""
    if not specs:
        return [], ["no agents configured: add [[agents]] tables to the config file"]
    agents, problems = [], []
    for index, spec in enumerate(specs):
        try:
            agents.append(_build(index, spec))
        except ConfigError as exc:
            problems.append(str(exc))
    return agents, problems


def _validated(index: int, spec: AgentSpec, kind: str, texts: list[str]) -> list[ProcessorSpec]:
    try:
        processors = [parse_spec(text) for text in texts]
        if processors:  # what ctx.attach will check, without constructing anything
            publish = spec.publish_audio if kind == "audio" else spec.publish_video
            make_rule(processors, None, None, [TrackOutput(name="check")] if publish else None)
    except ProcessorError as exc:
        raise ConfigError(f"agents[{index}] ({spec.agent_name or 'automatic'}) {kind}: {exc}") from None
    return processors


def _data_processors(
    index: int, spec: AgentSpec, dataflow: CompiledDataflow | None
) -> dict[str, ProcessorSpec]:
    """`data_processors` by name ("name = spec", or a bare spec named by its spec name), each one a data
    processor that some route sends to, and every route's `to_processors` a declared name."""
    where = f"agents[{index}] ({spec.agent_name or 'automatic'})"
    texts: dict[str, str] = {}
    for text in spec.data_processors:
        match = _NAMED.match(text)
        name, spec_text = (match["name"], match["spec"]) if match else (text.split("(")[0].strip(), text)
        if name in texts:
            raise ConfigError(f"{where} data_processors: the name {name!r} is given twice")
        texts[name] = spec_text
    try:
        named = named_specs({name: parse_spec(text) for name, text in texts.items()}) if texts else {}
    except (ProcessorError, ValueError) as exc:
        raise ConfigError(f"{where} data_processors: {exc}") from None
    routes = dataflow.config.route if dataflow is not None else []
    wanted: set[str] = set()
    for number, route in enumerate(routes):
        for name in route.to_processors:
            if name not in named:
                declared = ", ".join(named) or "none"
                raise ConfigError(
                    f"agents[{index}].data.route[{number}] ({route.name or 'unnamed'}) to_processors: no "
                    f"data processor named {name!r} (data_processors declares: {declared})"
                )
            wanted.add(name)
    idle = [name for name in named if name not in wanted]
    if idle:
        raise ConfigError(
            f"{where} data_processors: no route sends to {idle[0]!r} (add a [[agents.data.route]] with "
            f'to_processors = ["{idle[0]}"]; a route without match takes every message)'
        )
    return named


def _build(index: int, spec: AgentSpec) -> Agent:
    audio = _validated(index, spec, "audio", spec.audio)
    video = _validated(index, spec, "video", spec.video)
    dataflow = load_dataflow(spec.data, where=f"agents[{index}].data") if spec.data else None
    data = _data_processors(index, spec, dataflow)
    if not audio and not video and dataflow is None:
        raise ConfigError(
            f"agents[{index}] ({spec.agent_name or 'automatic'}): no audio or video processors and no data "
            "flows"
        )

    def outputs(publish: bool) -> list[Output]:
        chosen: list[Output] = [DataOutput(topic=spec.topic, reliable=spec.reliable)]
        if publish:
            chosen.append(TrackOutput(name=spec.agent_name or "framepool"))
        return chosen

    async def entrypoint(ctx: JobContext) -> None:
        if data:  # before the data flow: its routes send to them
            await ctx.attach_data(data, output=DataOutput(topic=spec.topic, reliable=spec.reliable))
        if dataflow is not None:
            ctx.run_dataflow(dataflow, rpc_methods=spec.rpc_methods)
        await ctx.connect(auto_subscribe=False)
        participants = None
        if spec.participant_identity:
            participants = [spec.participant_identity]
        elif ctx.job.type != agent_pb.JT_ROOM and ctx.job.HasField("participant"):
            participants = [ctx.job.participant.identity]
        if audio:
            ctx.attach(audio, participants=participants, output=outputs(spec.publish_audio))
        if video:
            ctx.attach(video, participants=participants, output=outputs(spec.publish_video))

    entrypoint.__name__ = f"declarative_{spec.agent_name or 'automatic'}_{spec.job_type}"
    sinks = dataflow.config.sinks() if dataflow is not None else set()
    return Agent(
        entrypoint, spec.agent_name, spec.job_type, processors=[*audio, *video, *data.values()], sinks=sinks
    )
