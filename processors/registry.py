"""Processor names, specs and loading (supervisor and worker).

A spec is written `name` or `name(key=value, key=value)`; `name` is a built-in processor's name or a
user processor as `package.module:Class`. Values are parsed as JSON when they parse (numbers, booleans,
quoted strings, lists), else taken as plain strings, then validated against the processor's `Params`.

`resolve` is all the supervisor does with a spec: import the class, validate the parameters, ask the class
for its kind and input format. It never constructs the processor; `instantiate` does, in the worker.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from framepool.errors import ProcessorError
from framepool.processors.api import Processor
from framepool.processors.kinds import InputFormat, MediaKind, media_kind

BUILTIN: dict[str, str] = {
    "audio-level": "framepool.processors.audio_level:AudioLevel",
    "loudness": "framepool.processors.loudness:Loudness",
    "audio-quality": "framepool.processors.audio_quality:AudioQuality",
    "dtmf": "framepool.processors.dtmf:Dtmf",
    "video-motion": "framepool.processors.video_motion:VideoMotion",
    "vad": "framepool.processors.vad:Vad",
    "silence": "framepool.processors.silence:Silence",
    "privacy-blur": "framepool.processors.privacy_blur:PrivacyBlur",
    "snapshot": "framepool.processors.snapshot:Snapshot",
    "scene-cut": "framepool.processors.scene_cut:SceneCut",
    "sharpness": "framepool.processors.sharpness:Sharpness",
    "brightness": "framepool.processors.brightness:Brightness",
    "black-frame": "framepool.processors.black_frame:BlackFrame",
    "frozen-frame": "framepool.processors.frozen_frame:FrozenFrame",
}

_SPEC = re.compile(r"^\s*(?P<name>[A-Za-z0-9_.:\-]+)\s*(?:\((?P<args>.*)\))?\s*$", re.S)


class ProcessorSpec(msgspec.Struct, frozen=True):
    """A processor to run and its raw parameters; crosses the control channel as is."""

    name: str
    params: dict[str, Any] = {}

    def __str__(self) -> str:
        if not self.params:
            return self.name
        args = ", ".join(f"{key}={json.dumps(value)}" for key, value in self.params.items())
        return f"{self.name}({args})"


def parse_spec(text: str) -> ProcessorSpec:
    """Parse `name(key=value, ...)`; a malformed spec raises ProcessorError."""
    match = _SPEC.match(text)
    if match is None:
        raise ProcessorError(f"bad processor spec {text!r}: expected NAME or NAME(key=value, ...)")
    params: dict[str, Any] = {}
    args = (match.group("args") or "").strip()
    for item in _split_args(args) if args else []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ProcessorError(f"bad processor spec {text!r}: parameter {item.strip()!r} is not key=value")
        params[key.strip()] = _parse_value(raw.strip())
    return ProcessorSpec(match.group("name"), params)


def parse_specs(text: str) -> list[ProcessorSpec]:
    """A comma-separated list of specs (commas inside parentheses belong to the parameters)."""
    return [parse_spec(part) for part in _split_args(text) if part.strip()]


def _split_args(text: str) -> list[str]:
    """Split on top-level commas: not inside brackets or quoted strings (where a backslash escapes the next
    character, as in the JSON strings `ProcessorSpec.__str__` writes)."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote, escaped = 0, "", False
    for char in text:
        if escaped:
            escaped = False
        elif quote:
            escaped = char == "\\"
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def load_class(name: str) -> type[Processor[Any, Any]]:
    """The Processor subclass for a built-in name or `module:Class`."""
    target = BUILTIN.get(name, name)
    module_name, sep, attr = target.partition(":")
    if not sep:
        known = ", ".join(sorted(BUILTIN))
        raise ProcessorError(
            f"unknown processor {name!r}: built-ins are {known}; user processors are module:Class"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProcessorError(f"processor {name!r}: cannot import {module_name!r}: {exc}") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Processor)):
        raise ProcessorError(f"processor {name!r}: {target} is not a framepool Processor subclass")
    if not isinstance(inspect.getattr_static(cls, "input_format"), classmethod):
        raise ProcessorError(
            f"processor {name!r}: input_format must be a classmethod taking the validated params "
            "(framepool learns formats without constructing processors)"
        )
    return cls


def validate_params(cls: type[Processor[Any, Any]], spec: ProcessorSpec) -> msgspec.Struct:
    """The processor's typed parameters; a bad one raises ProcessorError naming it and the expectation."""
    try:
        return msgspec.convert(spec.params, cls.Params, strict=False)
    except msgspec.ValidationError as exc:
        raise ProcessorError(f"processor {spec.name!r}: bad parameter: {_param_message(exc)}") from None


def _param_message(exc: msgspec.ValidationError) -> str:
    message = str(exc)
    match = re.search(r" - at `\$\.(.+)`$", message)
    if match is None:
        return message.replace("Object contains unknown field", "unknown parameter")
    return f"{match.group(1)}: {message[: match.start()]}"


@dataclass(frozen=True, slots=True)
class ResolvedSpec:
    """A spec resolved without running the processor: its class, parameters, kind and input format."""

    spec: ProcessorSpec
    cls: type[Processor[Any, Any]]
    params: msgspec.Struct
    kind: MediaKind[Any, Any]
    fmt: InputFormat


def resolve(spec: ProcessorSpec) -> ResolvedSpec:
    """Import, validate, ask the class for its format; ProcessorError for anything a user can get wrong."""
    cls = load_class(spec.name)
    try:
        kind = media_kind(getattr(cls, "kind", ""))
    except ProcessorError as exc:
        raise ProcessorError(f"processor {spec.name!r}: {exc}") from None
    params = validate_params(cls, spec)
    try:
        fmt = cls.input_format(params)
    except (ValueError, TypeError) as exc:
        raise ProcessorError(f"processor {spec.name!r}: input_format: {exc}") from None
    if not isinstance(fmt, kind.format_type):
        raise ProcessorError(
            f"processor {spec.name!r} is a {kind.name} processor but its input_format returned {fmt!r}"
        )
    return ResolvedSpec(spec, cls, params, kind, fmt)


def instantiate(spec: ProcessorSpec | ResolvedSpec) -> Processor[Any, Any]:
    """Construct the processor (in the worker); any error a user can cause is a ProcessorError."""
    resolved = spec if isinstance(spec, ResolvedSpec) else resolve(spec)
    try:
        return resolved.cls(resolved.params)
    except (ValueError, TypeError) as exc:
        raise ProcessorError(f"processor {resolved.spec.name!r}: {exc}") from None
