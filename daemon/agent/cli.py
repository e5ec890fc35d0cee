"""The agent server's subcommands: `start`, `dev`, `connect` (supervisor process; `framepool.cli` calls
`register`).

- `framepool start [module:server]`: production. JSON logs unless told otherwise. Without `module:server` it
  runs the declarative agents of the config (`[[agents]]`).
- `framepool dev [module:server]`: development. Human-readable logs; without LIVEKIT_URL it uses the dev
  server already running on `--dev-port` (`framepool devserver`, as the README's quick start has it), or
  starts the loopback dev server in this process (devkey/secret) and prints how to join it; a port taken by
  something else is one line saying how to point framepool at LiveKit.
- `framepool connect --room NAME [--participant IDENTITY] [module:server]`: one job in a named room, now,
  without registering for dispatch (the room is created through RoomService; the job's token is minted here).

The settings given to the CLI (flags over environment over TOML) replace whatever settings the user's module
gave its AgentServer: what runs is what `framepool config` shows.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import uuid
import warnings
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from livekit import api
from livekit.protocol import agent as agent_pb

from framepool.errors import ConfigError, ExitStatus, ServerUnavailableError
from framepool.hardening import make_undumpable
from framepool.logs import setup_logging
from framepool.proctitle import supervisor_title
from framepool.settings import Settings
from framepool.signals import StopSignals, run_service

if (
    TYPE_CHECKING
):  # imported lazily at run time: every `framepool` command loads this module, few need the rtc SDK
    from framepool.agent.server import Agent, AgentServer

log = logging.getLogger("framepool.agent.cli")

DEV_KEYS = {"devkey": "secret"}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add start, dev and connect to the `framepool` command line."""
    target_help = "An AgentServer to run, as module:attribute (default: the [[agents]] of the config)."
    start = subparsers.add_parser(
        "start",
        parents=[common],
        help="Run the agent server (production, JSON logs).",
        usage="framepool start [--config FILE] [module:server] [SETTINGS FLAGS]",
    )
    start.add_argument("target", nargs="?", metavar="module:server", help=target_help)
    start.set_defaults(handler=_run_start, needs_settings=True)

    dev = subparsers.add_parser(
        "dev",
        parents=[common],
        help="Run the agent server for development (dev server if no LIVEKIT_URL).",
        usage="framepool dev [module:server] [SETTINGS FLAGS]",
    )
    dev.add_argument("target", nargs="?", metavar="module:server", help=target_help)
    dev.add_argument(
        "--dev-port", type=int, default=7880, help="Port of the in-process dev server (0: any free port)."
    )
    dev.set_defaults(handler=_run_dev, needs_settings=True)

    connect = subparsers.add_parser(
        "connect",
        parents=[common],
        help="Run one job in a named room without dispatch.",
        usage="framepool connect --room NAME [--participant IDENTITY] [module:server]",
    )
    connect.add_argument("target", nargs="?", metavar="module:server", help=target_help)
    connect.add_argument("--room", required=True, help="Room to join (created if it does not exist).")
    connect.add_argument(
        "--participant",
        default="",
        metavar="IDENTITY",
        help="The participant a participant/publisher job is about.",
    )
    connect.add_argument(
        "--agent", default=None, metavar="NAME", help="Which registered agent to run (default: the first)."
    )
    connect.set_defaults(handler=_run_connect, needs_settings=True)


def load_server(target: str | None, settings: Settings) -> AgentServer:
    """The AgentServer named by `module:attribute`, or one running the config's declarative agents."""
    from framepool.agent.declarative import build_agents
    from framepool.agent.server import AgentServer

    if not target:
        declarative = AgentServer(settings)
        for agent in build_agents(settings.agents):
            declarative.add_agent(agent)
        return declarative
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"bad server {target!r}: expected module:attribute, e.g. myagents:server")
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"bad server {target!r}: cannot import {module_name!r}: {exc}") from None
    server = getattr(module, attribute, None)
    if not isinstance(server, AgentServer):
        raise ConfigError(
            f"bad server {target!r}: {attribute!r} is not an AgentServer (got {type(server).__name__})"
        )
    server.configure(settings)
    return server


def quiet_short_secret_warning() -> None:
    """Drop PyJWT's short-HMAC-key warning (every token framepool and livekit-api sign would print it).

    The LiveKit server is what decides whether a key is acceptable (the dev server's "secret" is short
    on purpose); on the command line the warning only buried the one-line errors.
    """
    warnings.filterwarnings("ignore", message="The HMAC key is")


def _run_start(args: argparse.Namespace, settings: Settings | None) -> int:
    from framepool.service import Supervisor

    assert settings is not None
    make_undumpable()
    quiet_short_secret_warning()
    settings = with_log_format(settings, "json")
    server = load_server(args.target, settings)
    supervisor_title(agent.agent_name for agent in server.agents)
    return run_service(Supervisor(server).run())


def _run_dev(args: argparse.Namespace, settings: Settings | None) -> int:
    assert settings is not None
    make_undumpable()
    quiet_short_secret_warning()
    settings = with_log_format(settings, "text")
    return run_service(_dev(args, settings))


async def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from framepool.devserver.server import DevServer
    from framepool.roomclient import DEV_KEY, DEV_SECRET, dev_url, probe_devserver
    from framepool.service import Supervisor

    devserver = None
    if not settings.livekit_url and args.dev_port and await probe_devserver(args.dev_port):
        # `framepool devserver` (or livekit-server --dev) already runs there, as the quick start has it.
        settings = replace_settings(
            settings, livekit_url=dev_url(args.dev_port), api_key=DEV_KEY, api_secret=DEV_SECRET
        )
        print(f"using the dev server already running at {settings.livekit_url}", file=sys.stderr)
    elif not settings.livekit_url:
        devserver = DevServer(port=args.dev_port, keys=dict(DEV_KEYS), departure_timeout=2.0)
        try:
            await devserver.start()
        except OSError as exc:  # taken between the probe and the bind
            await devserver.aclose()
            raise ConfigError(
                f"cannot start the dev server on port {args.dev_port}: {exc.strerror}"
            ) from None
        key, secret = next(iter(DEV_KEYS.items()))
        settings = replace_settings(settings, livekit_url=devserver.url, api_key=key, api_secret=secret)
        print(
            f"dev server at {devserver.url} (LIVEKIT_API_KEY={key} LIVEKIT_API_SECRET={secret})",
            file=sys.stderr,
        )
    try:
        server = load_server(args.target, settings)
        supervisor_title(agent.agent_name for agent in server.agents)
        if devserver is not None and server.load_fnc is None:
            from framepool.agent.server import pool_load

            server.load_fnc = pool_load
        return await Supervisor(server).run()
    finally:
        if devserver is not None:
            await devserver.aclose()


def with_log_format(settings: Settings, auto: Literal["text", "json"]) -> Settings:
    """Settings whose log format is decided (`auto` stands for what this command defaults to), logging set up.

    The workers set up their own logging from the settings the pool hands them: left at "auto" they would
    decide by their own stderr and could print JSON among the supervisor's text lines.
    """
    settings = replace_settings(
        settings, log_format=auto if settings.log_format == "auto" else settings.log_format
    )
    setup_logging(settings.log_level, settings.log_format)
    return settings


def replace_settings(settings: Settings, **changes: Any) -> Settings:
    import msgspec

    return msgspec.structs.replace(settings, **changes)


def _run_connect(args: argparse.Namespace, settings: Settings | None) -> int:
    assert settings is not None
    make_undumpable()
    quiet_short_secret_warning()
    settings = with_log_format(settings, "text")
    server = load_server(args.target, settings)
    supervisor_title(agent.agent_name for agent in server.agents)
    return run_service(connect(server, args.room, args.participant, args.agent))


async def connect(
    server: AgentServer, room: str, participant: str = "", agent_name: str | None = None
) -> int:
    """Run one job of `agent_name` in `room` now; 0 if it ends cleanly (Ctrl-C ends it cleanly too)."""
    from framepool.agent.registration import ws_url
    from framepool.service import LocalJob, Supervisor

    agent = _pick_agent(server, agent_name)
    settings: Settings = server.settings
    job = await _simulated_job(settings, room, participant, agent)
    token = (
        api.AccessToken(settings.api_key, settings.api_secret)
        .with_identity(f"agent-{job.id}")
        .with_kind("agent")
        .with_grants(
            api.VideoGrants(
                room_join=True,
                room=room,
                agent=True,
                can_publish=True,
                can_subscribe=True,
                can_publish_data=True,
            )
        )
        .to_jwt()
    )
    # Installed here and restored at the end: `connect` also runs inside other programs (the tests).
    with StopSignals().installed() as signals:
        local = LocalJob(agent, job, ws_url(settings.livekit_url), token)
        supervisor = Supervisor(server, local_job=local, signals=signals)
        exit_status = await supervisor.run()
    if exit_status == ExitStatus.FAILURE:
        status, error = supervisor.job_status
        print(f"framepool: job failed: {error or agent_pb.JobStatus.Name(status)}", file=sys.stderr)
    return exit_status


def _pick_agent(server: AgentServer, agent_name: str | None) -> Agent:
    if not server.agents:
        raise ConfigError(
            "no agents to run: register one with @server.rtc_session or add [[agents]] to the config"
        )
    if agent_name is None:
        return server.agents[0]
    for agent in server.agents:
        if agent.agent_name == agent_name:
            return agent
    names = ", ".join(repr(a.agent_name) for a in server.agents)
    raise ConfigError(f"no agent named {agent_name!r}; registered: {names}")


async def _simulated_job(settings: Settings, room: str, participant: str, agent: Agent) -> agent_pb.Job:
    """A Job like the server would send, for a room created (or found) through RoomService."""
    from framepool.agent.registration import http_url
    from framepool.agent.server import JOB_TYPES

    if not (settings.livekit_url and settings.api_key and settings.api_secret):
        raise ConfigError(
            "missing LiveKit credentials: set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET"
        )
    try:
        async with api.LiveKitAPI(
            http_url(settings.livekit_url), settings.api_key, settings.api_secret
        ) as lk:
            info = await lk.room.create_room(api.CreateRoomRequest(name=room))
    except api.TwirpError as exc:
        raise ServerUnavailableError(
            f"LiveKit at {settings.livekit_url} refused to create room {room!r}: {exc.message}"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ServerUnavailableError(f"cannot reach LiveKit at {settings.livekit_url}: {exc}") from None
    job = agent_pb.Job(
        id=f"AJ_local_{uuid.uuid4().hex[:10]}",
        type=JOB_TYPES[agent.job_type],
        room=info,
        agent_name=agent.agent_name,
    )
    if participant:
        job.participant.identity = participant
    return job
