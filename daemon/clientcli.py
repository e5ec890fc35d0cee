"""The room client subcommands `publish`, `listen` and `dispatch` (client process: each command is its own
process, with no supervisor and no workers; `framepool.cli` calls `register`).

Each ends its process with `os._exit` once everything it wrote is flushed (see `_end_process`). They take
no framepool settings (no `--config`, no `FRAMEPOOL_*`): only where LiveKit is
(framepool.roomclient), so they work the same against any LiveKit server, framepool in the room or not.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from framepool.agent.cli import quiet_short_secret_warning
from framepool.errors import ExitStatus, FramepoolError
from framepool.logs import setup_logging
from framepool.roomclient import add_connection_flags, create_dispatch, credentials
from framepool.settings import Settings
from framepool.signals import run_service


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    """Add publish, listen and dispatch to the `framepool` command line."""
    _add_publish(subparsers)
    _add_listen(subparsers)
    _add_dispatch(subparsers)


def _add_publish(subparsers: Any) -> None:
    publish = subparsers.add_parser(
        "publish",
        help="Publish a media file's audio and video, or a test tone and pattern, into a room.",
        usage="framepool publish FILE|testsrc --room ROOM [--loop] [--identity ID] [--url URL ...]",
    )
    publish.add_argument(
        "source", metavar="FILE|testsrc", help="A media file (anything FFmpeg reads) or testsrc."
    )
    publish.add_argument("--room", required=True, help="Room to join (LiveKit creates it).")
    publish.add_argument("--loop", action="store_true", help="Start the file again at its end.")
    publish.add_argument("--identity", default="publisher", help="Participant identity (default publisher).")
    add_connection_flags(publish)
    publish.set_defaults(handler=_run_publish, needs_settings=False)


def _add_listen(subparsers: Any) -> None:
    listen = subparsers.add_parser(
        "listen",
        help="Join a room, print results and count track frames as they arrive.",
        usage="framepool listen --room ROOM [--topic T ...] [--save DIR] [--identity ID] [--url URL ...]",
    )
    listen.add_argument("--room", required=True, help="Room to join.")
    listen.add_argument(
        "--topic", action="append", default=[], metavar="T", help="Only these data topics (repeatable)."
    )
    listen.add_argument(
        "--save", type=Path, metavar="DIR", help="Keep results, tracks and byte streams in DIR."
    )
    listen.add_argument(
        "--frame-every",
        type=_positive_int,
        default=30,
        metavar="N",
        help="With --save: every Nth video frame.",
    )
    listen.add_argument(
        "--print-every",
        type=float,
        default=1.0,
        metavar="S",
        help="At most one line per sender, processor and topic every S seconds (0: every message).",
    )
    listen.add_argument("--identity", default=None, help="Participant identity (default listener-XXXX).")
    add_connection_flags(listen)
    listen.set_defaults(handler=_run_listen, needs_settings=False)


def _add_dispatch(subparsers: Any) -> None:
    dispatch = subparsers.add_parser(
        "dispatch",
        help="Ask LiveKit to dispatch a named agent into a room (AgentDispatchService).",
        usage="framepool dispatch --agent NAME --room ROOM [--metadata TEXT] [--url URL ...]",
    )
    dispatch.add_argument("--agent", required=True, metavar="NAME", help="The agent_name it registered with.")
    dispatch.add_argument("--room", required=True, help="Room (LiveKit creates it).")
    dispatch.add_argument("--metadata", default="", help="Job metadata (ctx.job.metadata).")
    add_connection_flags(dispatch)
    dispatch.set_defaults(handler=_run_dispatch, needs_settings=False)


def _client_logging() -> None:
    """framepool's own warnings as text; the SDK's log silenced. Its connection attempts and retries log at
    WARNING and ERROR, which buried the one line that says why joining failed (the exception carries it)."""
    setup_logging("warning", "text")
    logging.getLogger("livekit").setLevel(logging.CRITICAL)
    quiet_short_secret_warning()


def _end_process(command: Callable[[], int]) -> NoReturn:
    """Run a command that used the rtc SDK, then end the process without interpreter finalisation.

    Why: the SDK's Rust threads may still be delivering an event when Python finalises; a foreign thread
    that then asks for the GIL is ended with pthread_exit, which unwinds through Rust frames that must not
    unwind, and the process aborts (status 134, a Rust panic on stderr) after a clean run, one exit in
    three in a loop here. `os._exit` ends every thread at once. The command has left its room and closed
    its files by then; its output is flushed here, and an error is the usual one line.
    """
    try:
        status = command()
    except FramepoolError as exc:
        print(f"framepool: {exc}", file=sys.stderr)
        status = exc.exit_code
    except KeyboardInterrupt:
        status = ExitStatus.INTERRUPTED
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _run_publish(args: argparse.Namespace, settings: Settings | None) -> int:
    from framepool.publish import publish
    from framepool.publishmedia import media_source

    creds = credentials(args)
    source = media_source(args.source)  # a missing file fails here, before joining
    _client_logging()
    _end_process(lambda: run_service(publish(creds, source, args.room, args.identity, args.loop)))


def _run_listen(args: argparse.Namespace, settings: Settings | None) -> int:
    from framepool.listen import listen
    from framepool.listensave import ListenArchive

    creds = credentials(args)
    archive = ListenArchive(args.save, args.frame_every) if args.save is not None else None
    identity = args.identity or f"listener-{uuid.uuid4().hex[:4]}"
    _client_logging()
    topics = set(args.topic)
    _end_process(lambda: run_service(listen(creds, args.room, identity, topics, args.print_every, archive)))


def _run_dispatch(args: argparse.Namespace, settings: Settings | None) -> int:
    creds = credentials(args)
    _client_logging()
    dispatch_id = run_service(create_dispatch(creds, args.agent, args.room, args.metadata))
    print(f"dispatched agent {args.agent!r} to room {args.room!r}: {dispatch_id}")
    return ExitStatus.OK
