"""The bridge process's start-up and main loop (bridge process; `python -m framepool.bridge`).

The supervisor (`framepool.bridgehost`) starts it with a `BridgeStart` JSON document on stdin, never through
the environment. Start-up order: die with the supervisor (PR_SET_PDEATHSIG; exit ORPHANED if the parent
died before that took effect), read BridgeStart, build every sink (a bad config exits CONFIG: restarting
would not help, so the host does not), print `ready` on stdout, then run one `SinkRunner` per sink.

SIGTERM or SIGINT ask it to stop: each runner delivers what its spool holds and ends; after `stop_timeout`
the rest is cancelled (it stays in the spool, delivered by the next start). A second signal cancels at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import enum
import logging
import os
import signal
import sys
from pathlib import Path

import msgspec

from framepool.bridge.registry import SinkSpec, build_sink
from framepool.bridge.runner import DeliveryOptions, SinkRunner
from framepool.bridge.sink import Sink
from framepool.bridge.watch import SpoolWatch
from framepool.errors import ConfigError
from framepool.ipc.spool import SpoolReader, sink_spool
from framepool.logs import log_context, setup_logging
from framepool.proctitle import bridge_title

PR_SET_PDEATHSIG = 1
log = logging.getLogger("framepool.bridge")


class BridgeExit(enum.IntEnum):
    """How the bridge process ends: its contract with `framepool.bridgehost` (values unlike ExitStatus's)."""

    OK = 0  # stopped when asked, spools caught up or the stop timeout reached
    FAILED = 70  # something broke (a sink's runner raised): restart with backoff
    CONFIG = 78  # bad start document or sink config: restarting cannot help, the host gives up
    ORPHANED = 79  # the supervisor died before the parent-death signal was armed


class BridgeStart(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Everything the bridge process runs with (stdin, JSON)."""

    spool_dir: str
    sinks: list[SinkSpec]
    delivery: DeliveryOptions = DeliveryOptions()
    stop_timeout: float = 10.0
    parent_pid: int = 0  # the supervisor; 0: do not check
    log_level: str = "info"
    log_format: str = "auto"


def main() -> None:
    sys.exit(run_bridge())


def run_bridge() -> BridgeExit:
    bridge_title()
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    try:
        start = msgspec.json.decode(sys.stdin.buffer.read(), type=BridgeStart)
    except msgspec.DecodeError as exc:
        print(f"framepool bridge: bad start document: {exc}", file=sys.stderr)
        return BridgeExit.CONFIG
    if start.parent_pid and os.getppid() != start.parent_pid:
        return BridgeExit.ORPHANED
    setup_logging(start.log_level, start.log_format, process="bridge")
    try:
        sinks = [build_sink(spec, index) for index, spec in enumerate(start.sinks)]
    except ConfigError as exc:
        log.error("%s", exc)
        return BridgeExit.CONFIG
    try:
        asyncio.run(serve(start, sinks))
    except Exception:
        log.exception("bridge failed")
        return BridgeExit.FAILED
    return BridgeExit.OK


async def serve(start: BridgeStart, sinks: list[Sink]) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    main_task = asyncio.current_task()
    assert main_task is not None

    def on_signal() -> None:
        if stopping.is_set():
            main_task.cancel()  # the second signal: the quick path
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    watch = SpoolWatch()
    runners = []
    for sink in sinks:
        reader = SpoolReader(sink_spool(Path(start.spool_dir), sink.name))
        runners.append(SinkRunner(sink, reader, start.delivery, watch.watch(reader.directory), stopping))
    print("ready", flush=True)
    log.info("bridge ready: %s", ", ".join(runner.sink.name for runner in runners))
    try:
        tasks = [_start_runner(runner) for runner in runners]
        await _until_stopped(tasks, stopping, start.stop_timeout)
    finally:
        watch.close()
        for runner in runners:
            runner.reader.close()
            stats = msgspec.to_builtins(runner.stats)
            log.info("sink %s: %s", runner.sink.name, stats, extra={"sink": runner.sink.name})


def _start_runner(runner: SinkRunner) -> asyncio.Task[None]:
    """The runner's task, every line it logs carrying its sink's name (the task copies the context)."""
    with log_context(sink=runner.sink.name):
        return asyncio.create_task(runner.run(), name=runner.sink.name)


async def _until_stopped(tasks: list[asyncio.Task[None]], stopping: asyncio.Event, grace: float) -> None:
    """Run until asked to stop (or a runner fails), then give the runners `grace` seconds to catch up."""
    stop_wait = asyncio.ensure_future(stopping.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        failed = [task for task in done if task is not stop_wait and task.exception() is not None]
        if not failed:
            _, late = await asyncio.wait(tasks, timeout=grace)
            if late:
                log.warning("stop timeout: %d sink(s) not caught up, left in their spools", len(late))
            failed = [task for task in tasks if task.done() and not task.cancelled() and task.exception()]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
    finally:
        stop_wait.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
