"""Logging set-up and per-job log context (both processes: the supervisor and every worker call
`setup_logging`).

Two formats: `text` for a person at a terminal (`time level logger message key=value ...`) and `json` for
journald/Docker/log shippers (one object per line: ts, level, logger, msg, then the context fields). `auto`
picks json when stderr is not a terminal, so a daemon under systemd logs structured lines without a flag.

Context (job_id, room, stream, worker, ...) travels in a `contextvars.ContextVar`, set with
`log_context(**fields)`: every record logged inside the block, from any logger, carries the fields. A
ContextVar rather than LoggerAdapters passed around: asyncio copies the context into each task, so a job's
fields follow its tasks without threading an adapter through every call, and nested blocks compose. Fields
passed with `extra=` on a single call are added too.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, Literal, TextIO

import msgspec

from framepool import sdklog

LogFormat = Literal["auto", "text", "json"]

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


class TextFormatter(logging.Formatter):
    """`12:03:04.512 INFO  framepool.pool worker ready pid=123 cpu=1`."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{clock}.{int(record.msecs):03d} {record.levelname:<7} {record.name} {record.getMessage()}"
        fields = record_fields(record)
        if fields:
            line += " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: Any) -> str:
    text = str(value)
    return repr(text) if (not text or " " in text or "=" in text) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line; values msgspec cannot encode are written as their str()."""

    _encoder = msgspec.json.Encoder(enc_hook=str)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self._encoder.encode(entry).decode()


def resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["text", "json"]:
    if fmt != "auto":
        return fmt
    return "text" if stream.isatty() else "json"


def setup_logging(level: str = "info", fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Configure the root logger once per process: one stderr handler in the chosen format (replaces earlier
    set-ups)."""
    target = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(target)
    handler.setFormatter(JsonFormatter() if resolve_format(fmt, target) == "json" else TextFormatter())
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
