"""Logging set-up and per-job log context (every process: the supervisor, the forkserver, each worker, the
bridge and the dev server call `setup_logging` with their role).

Two formats: `text` for a person at a terminal (`time level [role] logger message key=value ...`) and `json`
for journald/Docker/log shippers. `auto` picks json when stderr is not a terminal, so a daemon under systemd
logs structured lines without a flag.

A JSON line is one object: `timestamp` (ISO 8601, UTC, milliseconds, `Z`: what Loki, Elasticsearch and
Cloud Logging recognise without a parser), `ts` (the same instant as unix seconds, for scripts), `level`,
`process` (supervisor, worker, forkserver, bridge, devserver: one stream carries them all, since workers and
the bridge inherit the supervisor's stderr), `pid`, `logger`, `message`, then the context fields, then `exc`
with the traceback when there is one. Every line of a process in json mode is such an object: library
loggers (the livekit SDK, aiohttp, asyncio) reach the same root handler, and what Python would print raw
(an uncaught exception in a thread or at exit, an exception ignored in a destructor, a warning) is routed
through logging too, its traceback in `exc`.

Context (job, room, agent, stream, worker, sink, ...) travels in a `contextvars.ContextVar`, set with
`log_context(**fields)`: every record logged inside the block, from any logger, carries the fields. A
ContextVar rather than LoggerAdapters passed around: asyncio copies the context into each task, so a job's
fields follow its tasks without threading an adapter through every call, and nested blocks compose. Fields
passed with `extra=` on a single call are added too.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType, TracebackType
from typing import Any, Literal, TextIO

import msgspec

from framepool import sdklog

LogFormat = Literal["auto", "text", "json"]
ProcessRole = Literal["supervisor", "worker", "forkserver", "bridge", "devserver"]

# The forkserver's log settings: multiprocessing starts it with a fixed command line and only its preload
# module names and its environment as inputs, so these (the settings' own variables) are set in the
# environment it is exec'd with (`framepool.pool.spawn`). Nothing else reads them from a process's
# environment: the workers and the bridge get their log settings in their start messages.
LEVEL_ENV = "FRAMEPOOL_LOG_LEVEL"
FORMAT_ENV = "FRAMEPOOL_LOG_FORMAT"

_NO_CONTEXT: Mapping[str, Any] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "framepool_log_context", default=_NO_CONTEXT
)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a context field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

log = logging.getLogger("framepool.logs")


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` to every record logged inside the block (in this thread or task and the tasks it
    starts)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    """The fields `log_context` blocks have set here (for handing to another process or thread)."""
    return dict(_context.get())


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The context fields of a record: the active log_context, then per-call `extra=` values."""
    fields = dict(_context.get())
    for key, value in vars(record).items():
        if key not in _RECORD_ATTRS and not key.startswith("_"):
            fields[key] = value
    return fields


def iso_timestamp(created: float) -> str:
    """`2024-05-01T12:03:04.512Z`: unix seconds as ISO 8601 in UTC, to the millisecond (truncated, as
    logging's own `msecs` is)."""
    seconds, millis = divmod(int(created * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class TextFormatter(logging.Formatter):
    """`12:03:04.512 INFO  [worker 2] framepool.worker processor x failed job=J room=r`: the role tag only
    for lines not from the supervisor (the process a person at the terminal started)."""

    def __init__(self, process: ProcessRole = "supervisor") -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = record_fields(record)
        tag = ""
        if self.process != "supervisor":
            worker = fields.pop("worker", None) if self.process == "worker" else None
            tag = f"[{self.process}{'' if worker is None else f' {worker}'}] "
        line = (
            f"{clock}.{int(record.msecs):03d} {record.levelname:<7} {tag}{record.name} {record.getMessage()}"
        )
        if fields:
            line += " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: Any) -> str:
    text = str(value)
    return repr(text) if (not text or " " in text or "=" in text) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring); values msgspec cannot encode are written as
    their str()."""

    _encoder = msgspec.json.Encoder(enc_hook=str)

    def __init__(self, process: ProcessRole = "supervisor") -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": iso_timestamp(record.created),
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "process": self.process,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return self._encoder.encode(entry).decode()


def resolve_format(fmt: str, stream: TextIO) -> Literal["text", "json"]:
    """`text` or `json` as given; anything else (`auto`) by whether `stream` is a terminal."""
    if fmt == "text":
        return "text"
    if fmt == "json":
        return "json"
    return "text" if stream.isatty() else "json"


def setup_logging(
    level: str = "info",
    fmt: LogFormat | str = "auto",
    stream: TextIO | None = None,
    process: ProcessRole = "supervisor",
) -> None:
    """Configure the root logger once per process: one stderr handler in the chosen format (replaces earlier
    set-ups); in json mode, what Python would print raw goes through it too."""
    target = sys.stderr if stream is None else stream
    as_json = resolve_format(fmt, target) == "json"
    handler = logging.StreamHandler(target)
    handler.setFormatter(JsonFormatter(process) if as_json else TextFormatter(process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # Library chatter (livekit's Rust logs, aiortc's SDP dumps) only when the operator asked for debug.
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("livekit", "aiortc", "aioice", "asyncio", "libav"):
        logging.getLogger(name).setLevel(quiet)
    sdklog.install()  # the SDK's benign lifecycle messages at the levels they deserve (see that module)
    route_uncaught(as_json)


def setup_logging_from_environment(process: ProcessRole) -> None:
    """`setup_logging` with the settings in `LEVEL_ENV` and `FORMAT_ENV` (the forkserver's one way to
    learn them)."""
    setup_logging(os.environ.get(LEVEL_ENV, "info"), os.environ.get(FORMAT_ENV, "auto"), process=process)


# The hooks `route_uncaught` replaced, by "module.hook", restored when a later set-up chooses text.
_replaced: dict[str, Any] = {}


def route_uncaught(through_logging: bool) -> None:
    """json mode: an uncaught exception (main thread or another), an exception ignored in a destructor or
    callback and a warning become log records, so nothing reaches stderr raw; text mode: Python's own
    output, readable at a terminal, is restored."""
    logging.captureWarnings(through_logging)
    hooks: list[tuple[Any, str, Any]] = [
        (sys, "excepthook", _log_uncaught),
        (threading, "excepthook", _log_thread_exception),
        (sys, "unraisablehook", _log_unraisable),
    ]
    for owner, name, hook in hooks:
        current, key = getattr(owner, name), f"{owner.__name__}.{name}"
        if through_logging and current is not hook:
            _replaced[key] = current
            setattr(owner, name, hook)
        elif not through_logging and current is hook:
            setattr(owner, name, _replaced.pop(key))


def _log_uncaught(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
    log.critical("uncaught %s: %s", kind.__name__, value, exc_info=(kind, value, traceback))


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # what threading's own hook ignores too
        return
    thread = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    log.error(
        "uncaught %s in thread %s: %s", args.exc_type.__name__, thread, args.exc_value, exc_info=exc_info
    )


def _log_unraisable(unraisable: Any) -> None:
    """sys.unraisablehook: `Exception ignored in <object>` (a destructor, a callback Python cannot raise
    from)."""
    try:
        where = repr(unraisable.object)
    except Exception:  # the object's own __repr__ may be what is broken
        where = f"<{type(unraisable.object).__name__} object>"
    what = unraisable.err_msg or "Exception ignored in"
    exc_info = (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    log.error("%s: %s", what, where, exc_info=exc_info if unraisable.exc_value is not None else None)
