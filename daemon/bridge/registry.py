"""Which class a sink's `type` names, and how a sink is built from its config (bridge process; the supervisor
calls `check` at start so a bad sink config fails there, with the path of the bad value).

Built-in types: `webhook`, `redis` (Redis Streams) and `postgres`. Any other type is `module:Class`, a
user's sink: a class with a msgspec `Config` struct, a `(name, config)` constructor and the
`framepool.bridge.sink.Sink` methods (docs/dataflows.md shows a complete one). Sink modules are imported
lazily, so a deployment without Redis does not need the `redis` package.
"""

from __future__ import annotations

import importlib
import re
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from framepool.bridge.sink import Sink
from framepool.errors import ConfigError

BUILTIN = {
    "webhook": "framepool.bridge.webhook:WebhookSink",
    "redis": "framepool.bridge.redis_sink:RedisStreamsSink",
    "postgres": "framepool.bridge.postgres_sink:PostgresSink",
}
NAME = r"^[A-Za-z0-9_.-]{1,64}$"  # a sink's name is also its spool directory's name


class SinkSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One configured sink (TOML `[[sinks]]`): its name, its type and the type's options."""

    name: Annotated[str, Meta(pattern=NAME, description="Unique name: logs, metrics, spool directory.")]
    type: Annotated[str, Meta(description="webhook, redis, postgres, or module:Class for your own sink.")]
    options: Annotated[dict[str, Any], Meta(description="The sink type's own settings (its Config).")] = {}


def sink_class(type_name: str) -> Any:
    """The class a sink type names (imported now); ConfigError if it cannot be found."""
    target = BUILTIN.get(type_name, type_name)
    if not re.fullmatch(r"[\w.]+:\w+", target):
        known = ", ".join(BUILTIN)
        raise ConfigError(f"sink type {type_name!r}: expected one of {known} or module:Class")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"sink type {type_name!r}: cannot import {module_name}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None or not isinstance(getattr(cls, "Config", None), type):
        raise ConfigError(f"sink type {type_name!r}: {target} is not a sink class with a Config struct")
    return cls


def sink_config(spec: SinkSpec, index: int = 0) -> msgspec.Struct:
    """The sink's options validated against its type's Config; ConfigError names the bad value."""
    cls = sink_class(spec.type)
    try:
        config: msgspec.Struct = msgspec.convert(spec.options, cls.Config, strict=False)
    except msgspec.ValidationError as exc:
        where = str(exc).replace("`$", f"`sinks[{index}].options")
        raise ConfigError(f"bad sink {spec.name!r} ({spec.type}): {where}") from None
    return config


def build_sink(spec: SinkSpec, index: int = 0) -> Sink:
    sink: Sink = sink_class(spec.type)(spec.name, sink_config(spec, index))
    return sink


def check(specs: list[SinkSpec]) -> None:
    """Validate every sink config (imports the sink modules); ConfigError on the first bad one."""
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"sink name {duplicates[0]!r} is used twice: names must be unique")
    for index, spec in enumerate(specs):
        sink_config(spec, index)


# Option names whose values are credentials, in any sink type (a user's sink too): shown masked.
SECRET_OPTION = re.compile(r"secret|password|passwd|token|api_?key|credential|authorization", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):[^@/\s]+@")  # scheme://user:PASSWORD@host
_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)  # libpq's key=value form


def masked_options(value: Any, secret: bool = False) -> Any:
    """A sink's options as `framepool config` shows them: a value under a credential-like name and every
    request header as `***`, the password of a URL or DSN in any other string too."""
    if isinstance(value, dict):
        return {
            key: masked_options(item, secret or key == "headers" or bool(SECRET_OPTION.search(key)))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked_options(item, secret) for item in value]
    if secret and value not in ("", None):
        return "***"
    if isinstance(value, str):
        return _DSN_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", value))
    return value
