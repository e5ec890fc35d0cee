"""The `framepool` command line (supervisor process; the console script is `framepool.cli:main`).

Every settings flag is generated from `framepool.settings.Settings` (`--workers`, `--load-threshold`,
`--log-level`, lists comma-separated), so a setting exists in exactly one place. The flags live in a
parent parser shared by the top level and every subcommand, so `framepool --workers 2 process ...` and
`framepool process --workers 2 ...` both work; their argparse default is SUPPRESS, so a flag that was not
given never shadows the environment or the TOML file (and a subcommand cannot reset a top-level flag).

Subcommand contract (also for `framepool.agent.cli.register(subparsers, common_parent)`): a subcommand
parser sets `handler=fn` with `fn(args, settings) -> int`; `main` loads the settings (flags over env over
TOML over defaults), configures logging, calls the handler and returns its exit status. A handler that
must run without settings sets `needs_settings=False` and receives `None`.

Errors: every FramepoolError becomes one line `framepool: <message>` and its exit code; Ctrl-C is 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from framepool import __version__
from framepool import settings as settings_module
from framepool.errors import ConfigError, ExitStatus, FramepoolError
from framepool.hardening import make_undumpable
from framepool.logs import setup_logging
from framepool.settings import Settings

PROG = "framepool"
_SKIPPED_FIELDS = settings_module.TOML_ONLY_FIELDS


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def settings_parent() -> argparse.ArgumentParser:
    """--config plus one flag per setting, generated from the Settings fields."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings (flags override FRAMEPOOL_* environment and the TOML file)")
    group.add_argument(
        "--config", type=Path, metavar="FILE", default=argparse.SUPPRESS, help="TOML settings file."
    )
    for field, env, description, default in settings_module.field_docs():
        if field in _SKIPPED_FIELDS:
            continue
        is_list = isinstance(default, list)
        group.add_argument(
            flag_name(field),
            dest=field,
            metavar="A,B,..." if is_list else field.upper(),
            type=_comma_list if is_list else str,
            default=argparse.SUPPRESS,
            help=f"{description} [env {env}; default {_show(default)}]".replace("%", "%%"),
        )
    return parent


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "empty"
    return repr(value) if isinstance(value, str) else str(value)


def load_settings(args: argparse.Namespace) -> Settings:
    """The effective settings for parsed arguments: defaults < TOML < environment < flags."""
    overrides = {field: getattr(args, field) for field in Settings.__struct_fields__ if hasattr(args, field)}
    return settings_module.load(getattr(args, "config", None), overrides=overrides)


class OneLineErrorParser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit 2, like every other error a user can cause; subcommand
    parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitStatus.CONFIG, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    common = settings_parent()
    # No abbreviations: argparse classifies every argument against this parser's options first, and with
    # abbreviations `process ... --processor X` is "ambiguous" among the --processor-* settings flags.
    parser = OneLineErrorParser(
        prog=PROG,
        allow_abbrev=False,
        usage=(
            f"{PROG} [SETTINGS FLAGS] COMMAND [ARGS]  (flags: `{PROG} --help`, reference: `{PROG} config "
            "--reference`)"
        ),
        parents=[common],
        description=(
            "LiveKit agent server: one supervisor holds the rooms, CPU-pinned workers process frames."
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, prog=PROG)
    _add_config(subparsers, common)
    _add_process(subparsers, common)
    _add_devserver(subparsers, common)
    from framepool.agent import cli as agent_cli  # start, dev, connect (they import framepool.cli)

    agent_cli.register(subparsers, common)
    from framepool.ops import probe  # framepool health

    probe.register(subparsers, common)
    from framepool import clientcli  # publish, listen, dispatch

    clientcli.register(subparsers)
    return parser


def _add_config(subparsers: Any, common: argparse.ArgumentParser) -> None:
    sub = subparsers.add_parser(
        "config",
        parents=[common],
        usage=f"{PROG} config [--reference [--markdown] | --stop-budget | --check] [SETTINGS FLAGS]",
        help="Print the effective settings, the settings reference or the stop budget.",
    )
    sub.add_argument(
        "--reference",
        action="store_true",
        help="Print every setting: flag, environment variable, default, description.",
    )
    sub.add_argument(
        "--markdown", action="store_true", help="With --reference: as a Markdown table (for the README)."
    )
    sub.add_argument(
        "--stop-budget",
        action="store_true",
        help="Print the longest a SIGTERM may take with these settings, rung by rung: systemd's "
        "TimeoutStopSec and Docker's stop grace must exceed it.",
    )
    sub.add_argument(
        "--check",
        action="store_true",
        help="Validate everything `start --config` would (settings, agents and their processors, CPUs, "
        "LiveKit credentials) without starting anything: exit 0, or 2 with one line per problem.",
    )
    sub.set_defaults(handler=_run_config, needs_settings=True)


def _add_process(subparsers: Any, common: argparse.ArgumentParser) -> None:
    sub = subparsers.add_parser(
        "process",
        parents=[common],
        usage=(
            f"{PROG} process INPUT --processor NAME[,NAME...] [--output FILE] [--output-media FILE] "
            "[SETTINGS FLAGS]"
        ),
        help="Run processors over a media file through the worker pool (offline).",
    )
    sub.add_argument(
        "input", type=Path, metavar="INPUT", help="Media file to decode (anything FFmpeg reads)."
    )
    sub.add_argument(
        "--processor",
        "-p",
        action="append",
        required=True,
        metavar="NAME[,NAME...]",
        help="Processors, e.g. 'audio-level(window_ms=100),video-motion'; repeatable.",
    )
    sub.add_argument(
        "--output",
        "-o",
        type=Path,
        metavar="FILE",
        help="Results as JSON lines; '-' for stdout (the summary then goes to stderr). Default: none.",
    )
    sub.add_argument(
        "--output-media", type=Path, metavar="FILE", help="Processed tracks (.mp4, .mkv, .webm)."
    )
    sub.add_argument("--quiet", "-q", action="store_true", help="No summary on stdout.")
    sub.set_defaults(handler=_run_process, needs_settings=True)


def _add_devserver(subparsers: Any, common: argparse.ArgumentParser) -> None:
    sub = subparsers.add_parser(
        "devserver", help="Run the loopback LiveKit dev server (tests, demo, local development only)."
    )
    sub.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    sub.add_argument("--port", type=int, default=7880, help="Port (default 7880).")
    sub.add_argument(
        "--keys",
        default="devkey:secret",
        metavar="KEY:SECRET[,...]",
        help="API keys and secrets (default devkey:secret).",
    )
    sub.add_argument(
        "--departure-timeout", type=float, default=20.0, help="Seconds before an empty room closes."
    )
    sub.add_argument("--verbose", "-v", action="store_true", help="Log signalling in detail.")
    sub.set_defaults(handler=_run_devserver, needs_settings=False)


def parse_keys(text: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for item in _comma_list(text):
        key, sep, secret = item.partition(":")
        if not (sep and key and secret):
            raise ConfigError(f"bad --keys entry {item!r}: expected KEY:SECRET")
        keys[key] = secret
    if not keys:
        raise ConfigError("--keys is empty: expected KEY:SECRET[,...]")
    return keys


def _run_devserver(args: argparse.Namespace, settings: Settings | None) -> int:
    from framepool.devserver.server import run_devserver

    setup_logging("debug" if args.verbose else "info", "auto", process="devserver")
    result: int = run_devserver(
        args.host, args.port, parse_keys(args.keys), args.verbose, args.departure_timeout
    )
    return result


def _run_config(args: argparse.Namespace, settings: Settings | None) -> int:
    if args.reference:
        print(reference_markdown() if args.markdown else reference_text())
    elif args.check:
        assert settings is not None
        return check_config(settings)
    elif args.stop_budget:
        from framepool.service import stop_budget

        assert settings is not None
        print(stop_budget(settings).describe())
    else:
        assert settings is not None
        print(to_toml(settings_module.masked(settings)))
    return 0


def _run_process(args: argparse.Namespace, settings: Settings | None) -> int:
    from framepool.offline.runner import OfflineJob, run_offline
    from framepool.signals import run_service

    assert settings is not None
    job = OfflineJob(
        input=args.input,
        processors=",".join(args.processor),
        output=args.output,
        output_media=args.output_media,
        summary=not args.quiet,
    )
    make_undumpable()
    return run_service(run_offline(settings, job))


def check_config(settings: Settings) -> int:
    """`framepool config --check`: one line per problem on stderr and exit 2, or a one-line summary."""
    from framepool.agent.declarative import check_agents
    from framepool.agent.server import AgentServer
    from framepool.machine import effective_workers, worker_cpus

    agents, problems = check_agents(settings.agents)
    server = AgentServer(settings)
    for agent in agents:
        server.add_agent(agent)
    checks = [server.check] if agents else []  # with no agent, the missing agents are the one problem
    cpus: list[int] = []

    def check_cpus() -> None:
        cpus.extend(worker_cpus(settings))

    for check in [*checks, check_cpus]:
        try:
            check()
        except FramepoolError as exc:
            problems.append(str(exc))
    if not agents:
        problems += _credential_problems(settings)
    for problem in problems:
        print(f"{PROG}: {problem}", file=sys.stderr)
    if problems:
        return ExitStatus.CONFIG
    print(
        f"configuration OK: {len(agents)} agents, {effective_workers(settings, cpus)} workers on CPUs {cpus}"
    )
    return ExitStatus.OK


def _credential_problems(settings: Settings) -> list[str]:
    names = [("LIVEKIT_URL", settings.livekit_url), ("LIVEKIT_API_KEY", settings.api_key)]
    missing = [name for name, value in [*names, ("LIVEKIT_API_SECRET", settings.api_secret)] if not value]
    return [f"missing LiveKit credentials: set {', '.join(missing)}"] if missing else []


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + " }"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def to_toml(data: dict[str, Any]) -> str:
    """Plain fields as `key = value`, lists of tables (agents) as `[[key]]` blocks; parses back with
    tomllib."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for item in value:
                tables.append(f"\n[[{key}]]")
                tables.extend(f"{name} = {_toml_value(inner)}" for name, inner in item.items())
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines + tables)


def reference_text() -> str:
    blocks = []
    for field, env, description, default in settings_module.field_docs():
        flag = "(TOML only)" if field in _SKIPPED_FIELDS else flag_name(field)
        blocks.append(
            f"{field}\n    flag {flag}  env {env or '(TOML only)'}  default {_show(default)}\n    "
            f"{description}"
        )
    return "\n".join(blocks)


def reference_markdown() -> str:
    rows = ["| Setting | Flag | Environment | Default | Description |", "|---|---|---|---|---|"]
    for field, env, description, default in settings_module.field_docs():
        flag = "—" if field in _SKIPPED_FIELDS else f"`{flag_name(field)}`"
        text = description.replace("|", r"\|")
        shown_env = f"`{env}`" if env else "—"
        rows.append(f"| `{field}` | {flag} | {shown_env} | `{_show(default)}` | {text} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit status (the console script passes it to sys.exit)."""
    try:
        args = build_parser().parse_args(argv)
        settings = None
        if getattr(args, "needs_settings", True):
            settings = load_settings(args)
            setup_logging(settings.log_level, settings.log_format)
        status: int = args.handler(args, settings)
        return status
    except FramepoolError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # `framepool config | head`: the reader left; stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.FAILURE


if __name__ == "__main__":
    sys.exit(main())
