"""The one settings object (supervisor; workers receive the fields they need in their start message).

Precedence, lowest first: field defaults < TOML file (`--config`) < environment (`FRAMEPOOL_<FIELD>`, and
`LIVEKIT_URL` / `LIVEKIT_API_KEY` / `LIVEKIT_API_SECRET`) < command-line flags. Every field carries its
type, default, environment variable and description here and nowhere else: the CLI flags, `framepool
config` and the settings reference in the README are generated from this module.

Why not pydantic-settings: one more large dependency for what msgspec (already used for the control
plane) does with `convert(strict=False)`; and why not configuration through `os.environ` for children:
workers get an explicit typed message, so what a worker runs with is visible in one place.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from framepool.agentspec import AgentSpec as AgentSpec  # settings files name it here
from framepool.bridge.registry import SinkSpec, masked_options
from framepool.errors import ConfigError
from framepool.machine import MIN_DERIVED_LIMIT_MB, derived_memory_limit_mb

ENV_PREFIX = "FRAMEPOOL_"
# The LiveKit tools' own variable names, so one environment serves livekit-cli, the SDK and framepool.
ENV_ALIASES = {"livekit_url": "LIVEKIT_URL", "api_key": "LIVEKIT_API_KEY", "api_secret": "LIVEKIT_API_SECRET"}
SECRET_FIELDS = frozenset({"api_secret"})
TOML_ONLY_FIELDS = frozenset({"agents", "sinks"})  # structured: no environment variable, no flag

AUTO = -1  # a memory setting derived from the machine (see Settings.__post_init__, framepool.machine)


log = logging.getLogger("framepool.settings")


def _doc(text: str, **constraints: Any) -> Any:
    return Meta(description=text, **constraints)


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Everything framepool can be told. Field order is the order of `framepool config`."""

    # LiveKit
    livekit_url: Annotated[str, _doc("LiveKit server URL, ws:// or wss://.")] = ""
    api_key: Annotated[str, _doc("LiveKit API key.")] = ""
    api_secret: Annotated[str, _doc("LiveKit API secret (masked in output).")] = ""
    # The SDK's single-peer-connection mode (/rtc/v1) pre-creates 3 audio and 3 video receivers on every
    # connection; the 3 idle video receivers alone hold 6 threads. A job subscribes only to what its
    # processors need, so framepool joins with the classic pair (publisher + subscriber) by default.
    single_peer_connection: Annotated[
        bool,
        _doc(
            "Join rooms with the SDK's single-peer-connection mode (/rtc/v1), which pre-creates 3 audio and "
            "3 video receivers per job (about 2 MB and 6 threads more per job than the default classic pair)."
        ),
    ] = False

    # Worker pool
    workers: Annotated[
        int,
        _doc(
            "Processor worker processes; 0 means one per CPU left after the supervisor's, at least 1.",
            ge=0,
            le=1024,
        ),
    ] = 0
    cpus: Annotated[
        list[Annotated[int, Meta(ge=0)]],
        _doc(
            "CPUs the workers are pinned to (round robin), e.g. '1,2,3'; empty: all CPUs this process may "
            "use."
        ),
    ] = []
    start_method: Annotated[
        Literal["forkserver", "spawn"],
        _doc("How worker processes start; both are safe in a supervisor that has threads."),
    ] = "forkserver"
    prewarm: Annotated[
        str, _doc("'module:function' run once in every worker before it takes streams (load models here).")
    ] = ""
    prewarm_timeout: Annotated[
        float,
        _doc(
            "Seconds a worker's start-up (including prewarm) may take; also bounds each agent's prewarm "
            "hook in the supervisor.",
            gt=0,
        ),
    ] = 30.0
    ping_interval: Annotated[float, _doc("Seconds between pings to each worker.", gt=0)] = 1.0
    ping_timeout: Annotated[
        float,
        _doc(
            "Seconds without a pong before an unresponsive worker's stack is dumped to the log "
            "(SIGUSR1); it is killed at the next ping unless it answered.",
            gt=0,
        ),
    ] = 5.0
    worker_memory_warn_mb: Annotated[
        int,
        _doc(
            "Log a warning when a worker's PSS exceeds this many MiB; 0 disables; -1 (the default): 3/4 of "
            "the limit (of the derived limit when the limit is disabled).",
            ge=AUTO,
        ),
    ] = AUTO
    worker_memory_limit_mb: Annotated[
        int,
        _doc(
            "Restart a worker whose PSS exceeds this many MiB; 0 disables; -1 (the default): half of the "
            "machine's memory (or of its cgroup's limit) divided among the workers, at least "
            f"{MIN_DERIVED_LIMIT_MB} MiB.",
            ge=AUTO,
        ),
    ] = AUTO
    worker_env: Annotated[
        list[Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\*?$")]],
        _doc(
            "Environment variables passed to the workers besides PATH, HOME, LANG, LANGUAGE, LC_*, TZ, "
            "TMPDIR, PYTHON*, OMP_*, MKL_* and OPENBLAS_* (a trailing '*' passes every name with that "
            "prefix); nothing else of the supervisor's environment reaches them, LIVEKIT_* never does.",
        ),
    ] = []
    sandbox: Annotated[
        bool,
        _doc(
            "Sandbox the workers for processors that are not fully trusted: run them as sandbox_user, with "
            "no_new_privs, non-dumpable and a seccomp filter (no signals to or /proc access into other "
            "processes, no ptrace, namespaces or mounts); a worker that cannot set it up fails to start.",
        ),
    ] = False
    sandbox_user: Annotated[
        str,
        _doc(
            "User (name or uid) sandboxed workers run as; switching needs the supervisor to run as root, "
            "else this must be the supervisor's own user. It must be able to read Python and the processors.",
            min_length=1,
        ),
    ] = "nobody"
    restart_backoff: Annotated[
        float, _doc("First delay before restarting a crashed worker, doubled per consecutive crash.", ge=0)
    ] = 0.2
    restart_backoff_max: Annotated[
        float, _doc("Longest delay between restarts of a crashing worker.", gt=0)
    ] = 10.0
    crash_loop_limit: Annotated[
        int, _doc("Workers dying this many times in a row before becoming ready halt the pool.", ge=1)
    ] = 5
    worker_shutdown_timeout: Annotated[
        float,
        _doc(
            "Seconds each rung of the pool's shutdown (detach streams; per worker: ack, exit, reaped "
            "after SIGKILL) may take.",
            gt=0,
        ),
    ] = 3.0
    processor_failure_limit: Annotated[
        int, _doc("Consecutive exceptions after which a processor is disabled for that stream.", ge=1)
    ] = 5
    quarantine_incidents: Annotated[
        int,
        _doc(
            "Worker deaths blamed on one processor of a stream (it hung, crashed the worker, overran its "
            "hard time limit or grew the worker past worker_memory_limit_mb) after which that processor is "
            "quarantined on that stream: never run there again; the stream's other processors go on.",
            ge=1,
        ),
    ] = 2
    processor_budget_ms: Annotated[
        float,
        _doc(
            "Time budget of one processor call in ms; 0 derives it from the stream's frame duration: "
            "processor_budget_frames frames' worth, at least processor_budget_min_ms.",
            ge=0,
        ),
    ] = 0.0
    processor_budget_frames: Annotated[
        float, _doc("Frames' worth of time a processor call may take (when processor_budget_ms = 0).", gt=0)
    ] = 10.0
    processor_budget_min_ms: Annotated[
        float, _doc("Floor of the derived processor time budget, in ms.", gt=0)
    ] = 250.0
    processor_budget_hard: Annotated[
        float,
        _doc(
            "A call still running after this many budgets is cut off: the worker is killed, the processor "
            "blamed (an incident towards quarantine_incidents) and its neighbours restarted at once.",
            ge=1,
        ),
    ] = 4.0
    processor_over_budget_limit: Annotated[
        int,
        _doc(
            "Consecutive calls over budget (but under the hard limit) after which a processor is "
            "quarantined on that stream: a processor that is always slow cannot starve its neighbours.",
            ge=1,
        ),
    ] = 20
    # Milliseconds rather than frames: processors ask for 10-100 ms frames, and slots are page-rounded, so a
    # fixed
    # frame count would hold 10x more audio (and memory) per stream at 100 ms than at 10 ms.
    audio_ring_ms: Annotated[
        int,
        _doc(
            "Milliseconds of audio an audio stream's ring holds (realtime drops beyond it): max(4, "
            "ceil(audio_ring_ms / frame_ms)) slots for the processors' frame length.",
            ge=10,
            le=600_000,
        ),
    ] = 320
    video_ring_slots: Annotated[int, _doc("Frames a video stream's ring holds.", ge=2, le=1024)] = 4
    # Result slots are pre-faulted like frame slots, so slots x size is resident memory per worker: keep
    # results small.
    result_ring_slots: Annotated[
        int,
        _doc(
            "Results a worker's result ring holds (the supervisor drains it on every wake-up).",
            ge=2,
            le=65536,
        ),
    ] = 256
    result_max_bytes: Annotated[
        int, _doc("Largest encoded result a processor may emit, in bytes.", ge=256, le=16 << 20)
    ] = 16 << 10
    # A worker decides how many results it writes; the supervisor decides how many it sends and keeps.
    result_rate: Annotated[
        float,
        _doc(
            "Results per second one stream may send to its room (a burst of twice that is allowed); the "
            "rest are dropped and counted.",
            gt=0,
        ),
    ] = 200.0
    room_outbox: Annotated[
        int,
        _doc(
            "Results waiting to be sent to one room; when full the oldest is dropped and counted.",
            ge=1,
        ),
    ] = 1024
    # Blobs (ctx.send_bytes, framepool.ipc.blobs): the blob ring is pre-faulted, slots x bytes_max per worker.
    bytes_max: Annotated[
        int, _doc("Largest blob a processor may send (ctx.send_bytes), in bytes.", ge=1024, le=64 << 20)
    ] = 4 << 20
    bytes_ring_slots: Annotated[
        int, _doc("Blobs a worker's blob ring holds; 0: no ring, send_bytes raises.", ge=0, le=64)
    ] = 2
    bytes_rate: Annotated[
        float, _doc("Blobs per second one stream may send to its room (twice that as a burst).", gt=0)
    ] = 5.0
    bytes_in_flight: Annotated[
        int, _doc("Blobs waiting to be sent to one room (besides the one being sent); when full the oldest "
                  "is dropped and counted.", ge=1)
    ] = 4  # fmt: skip

    # Room data (framepool.agent.intake)
    data_sender_rate: Annotated[
        float,
        _doc("Data messages per second one participant may send framepool (twice that as a burst); the "
             "rest are dropped and counted against that participant.", gt=0),
    ] = 100.0  # fmt: skip
    data_stream_max_bytes: Annotated[
        int,
        _doc("Largest text or byte stream framepool reads (the SDK is told too); a longer one ends with an "
             "error and is counted.", ge=1),
    ] = 1 << 20  # fmt: skip
    data_streams_open: Annotated[
        int, _doc("Streams of one job read at once; more are refused and counted.", ge=1)
    ] = 32

    # Agent server
    load_threshold: Annotated[
        float, _doc("Load at which the daemon reports itself full to LiveKit.", gt=0, le=1)
    ] = 0.75
    max_jobs: Annotated[int, _doc("Most concurrent jobs; 0 means limited by load only.", ge=0)] = 0
    drain_timeout: Annotated[
        float,
        _doc(
            "Seconds running jobs may take to finish after SIGTERM; systemd's TimeoutStopSec must exceed "
            "the whole stop budget (`framepool config --stop-budget`).",
            ge=0,
        ),
    ] = 60.0
    shutdown_timeout: Annotated[
        float, _doc("Seconds a job's shutdown (callbacks, flush, disconnect) may take.", gt=0)
    ] = 10.0
    assignment_timeout: Annotated[
        float, _doc("Seconds to wait for a job assignment after accepting a request.", gt=0)
    ] = 7.5
    status_interval: Annotated[float, _doc("Seconds between load reports to LiveKit.", gt=0)] = 2.5
    max_retry: Annotated[
        int, _doc("Consecutive failed connections to LiveKit before the daemon exits.", ge=1)
    ] = 16
    agents: Annotated[list[AgentSpec], _doc("Declarative agents (TOML [[agents]] tables only).")] = []

    # Operations
    log_level: Annotated[Literal["debug", "info", "warning", "error"], _doc("Log verbosity.")] = "info"
    log_format: Annotated[
        Literal["auto", "text", "json"], _doc("Log format; auto is json when stderr is not a terminal.")
    ] = "auto"
    http_host: Annotated[str, _doc("Address of the health and status endpoints (framepool.ops).")] = "0.0.0.0"
    http_port: Annotated[
        int,
        _doc("Port of /livez, /readyz, /status and /metrics on the supervisor; 0 disables.", ge=0, le=65535),
    ] = 8081
    live_max_lag: Annotated[
        float,
        _doc(
            "/livez answers 503 while the supervisor loop was this many seconds late in the last 5 s.", gt=0
        ),
    ] = 2.0

    # Bridges: room data delivered to external systems through an on-disk spool per sink (docs/dataflows.md)
    sinks: Annotated[
        list[SinkSpec],
        _doc("Sinks room data is delivered to (TOML [[sinks]] tables only; docs/dataflows.md)."),
    ] = []
    spool_dir: Annotated[
        str, _doc("Directory of the sinks' spools (one per sink): persistent and local.", min_length=1)
    ] = "framepool-spool"
    spool_max_mb: Annotated[
        int,
        _doc(
            "Most MiB one sink's spool may hold; beyond it the newest events are refused and counted.", ge=1
        ),
    ] = 1024
    spool_commit_ms: Annotated[
        float,
        _doc(
            "Milliseconds between the spool's group commits (fdatasync): what a machine crash may lose.", gt=0
        ),
    ] = 20.0
    bridge_batch_max: Annotated[int, _doc("Events per delivery to a sink.", ge=1, le=100_000)] = 100
    bridge_batch_ms: Annotated[
        float, _doc("Milliseconds a delivery that is not full waits for more events.", ge=0)
    ] = 20.0
    bridge_retry_initial: Annotated[
        float,
        _doc("Seconds before the first retry of a failed delivery; doubled per failure, jittered.", gt=0),
    ] = 0.5
    bridge_retry_max: Annotated[
        float, _doc("Longest wait between retries of a delivery (a Retry-After may ask for more).", gt=0)
    ] = 30.0
    bridge_stop_timeout: Annotated[
        float, _doc("Seconds the bridge process may take at stop to deliver what its spools hold.", ge=0)
    ] = 10.0

    def __post_init__(self) -> None:
        # Resolved here, on every path that makes a Settings (defaults, files, environment, flags), so the
        # pool and `framepool config` see the numbers in force, never the AUTO marker.
        derived = derived_memory_limit_mb(_worker_count(self))
        if self.worker_memory_limit_mb == AUTO:
            self.worker_memory_limit_mb = derived
        if self.worker_memory_warn_mb == AUTO:
            self.worker_memory_warn_mb = (self.worker_memory_limit_mb or derived) * 3 // 4


def field_docs() -> list[tuple[str, str, str, Any]]:
    """(field, environment variable, description, default) for every setting, in declaration order."""
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    rows = []
    for field in info.fields:
        description = ""
        field_type = field.type
        if isinstance(field_type, msgspec.inspect.Metadata):
            description = (field_type.extra_json_schema or {}).get("description", "")
        default = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
        rows.append((field.name, env_name(field.name), description, default))
    return rows


def env_name(field: str) -> str:
    """The environment variable of a field; empty for TOML-only fields."""
    if field in TOML_ONLY_FIELDS:
        return ""
    return ENV_ALIASES.get(field, ENV_PREFIX + field.upper())


def _env_layer(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    layer: dict[str, tuple[Any, str]] = {}
    for field in Settings.__struct_fields__:
        name = env_name(field)
        if name and name in environ:
            raw = environ[name]
            listed = field in ("cpus", "worker_env")
            value: Any = [item for item in re.split(r"[,\s]+", raw) if item] if listed else raw
            layer[field] = (value, name)
    return layer


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the layers and validate; a bad value raises ConfigError naming key, value, source and
    expectation."""
    merged: dict[str, tuple[Any, str]] = {}
    if config_file is not None:
        for key, value in load_toml(config_file).items():
            merged[key] = (value, str(config_file))
    merged.update(_env_layer(os.environ if environ is None else environ))
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = (value, "--" + key.replace("_", "-"))
    return _validate(merged)


def _validate(merged: dict[str, tuple[Any, str]]) -> Settings:
    unknown = sorted(set(merged) - set(Settings.__struct_fields__))
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"unknown setting {key!r} (from {merged[key][1]}); see `framepool config --reference`"
        )
    values = {key: value for key, (value, _source) in merged.items()}
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, merged)) from None


def _explain(exc: msgspec.ValidationError, merged: dict[str, tuple[Any, str]]) -> str:
    message = str(exc)
    match = re.search(r" - at `\$\.([A-Za-z_]+)(.*)`$", message)
    if match is None:
        return f"bad settings: {message}"
    key, subpath = match.group(1), match.group(2)
    expected = message[: match.start()]
    value, source = merged.get(key, ("?", "?"))
    shown = "***" if key in SECRET_FIELDS else repr(value)
    choices = _choices(key) if not subpath and expected.startswith("Invalid enum value") else None
    if choices:
        expected = "expected one of " + ", ".join(choices)
    elif expected.startswith("Expected `bool`"):
        expected = "expected true or false"
    return f"bad setting {key}{subpath} = {shown} (from {source}): {expected[0].lower() + expected[1:]}"


def _choices(key: str) -> list[str]:
    """The allowed values of a Literal field, for messages ('invalid enum value' alone does not help)."""
    hint = typing.get_type_hints(Settings, include_extras=True).get(key)
    inner = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
    return [str(choice) for choice in typing.get_args(inner)] if typing.get_origin(inner) is Literal else []


def _worker_count(settings: Settings) -> int:
    """The workers `effective_workers` will start, without validating `cpus` (that fails at start)."""
    if settings.workers:
        return settings.workers
    return max(1, len(settings.cpus or os.sched_getaffinity(0)) - 1)


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with secrets masked, for `framepool config` and logs."""
    data: dict[str, Any] = msgspec.to_builtins(settings)
    for key in SECRET_FIELDS:
        if data.get(key):
            data[key] = "***"
    data["sinks"] = [{**sink, "options": masked_options(sink["options"])} for sink in data["sinks"]]
    return data
