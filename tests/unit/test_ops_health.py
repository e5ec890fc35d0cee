"""Liveness and readiness decisions on a Supervisor that is not serving (its loop-lag monitor real, its loop
stalled for real), URL redaction, the readiness log, the process sampler's cache and the health probe's
answer when nothing listens."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

import pytest

from framepool.agent.server import AgentServer
from framepool.loop import LoopLagMonitor
from framepool.ops.health import ReadinessLog, Verdict, liveness, readiness, redact
from framepool.ops.probe import livez_url, probe
from framepool.ops.status import ProcessSampler
from framepool.service import Supervisor
from framepool.settings import Settings
from framepool.signals import StopSignals


def idle_supervisor(**settings: object) -> Supervisor:
    return Supervisor(AgentServer(Settings(http_port=0, **settings)), signals=StopSignals())  # type: ignore[arg-type]


def block_the_loop(seconds: float) -> None:
    """The stall under test: a blocking call on the loop's thread, so nothing else runs on it meanwhile."""
    time.sleep(seconds)


async def test_a_stalled_loop_is_not_live_until_the_stall_leaves_the_window() -> None:
    # Margins wide enough that a loaded machine's own lag (tenths of a second) decides nothing.
    supervisor = idle_supervisor(live_max_lag=0.8)
    supervisor.loop_lag = monitor = LoopLagMonitor(interval=0.05, window=0.5)
    monitor.start()
    try:
        assert liveness(supervisor).ok
        block_the_loop(1.0)
        seen_at_once = liveness(supervisor)  # before the monitor's tick has recorded the stall
        await asyncio.sleep(0.001)  # a timer due after the overdue tick: the tick runs first
        assert monitor.stalls >= 1 and monitor.lag >= 0.95
        recorded = liveness(supervisor)
        await asyncio.sleep(0.6)  # the window moves past the stall
        recovered = liveness(supervisor)
    finally:
        monitor.stop()
    for verdict in (seen_at_once, recorded):
        assert (verdict.ok, verdict.cause) == (False, "loop stalled")
        assert verdict.reason.startswith("supervisor event loop stalled: ")
        assert verdict.reason.endswith(" ms late in the last 0.5 s (live_max_lag = 0.8 s)")
    assert recovered.ok
    assert readiness(supervisor).cause == "starting"  # not live comes first only while it lasts


def test_before_start_live_but_not_ready() -> None:
    supervisor = idle_supervisor()
    assert liveness(supervisor) == Verdict(True)
    assert readiness(supervisor) == Verdict(False, "starting", "starting: workers not ready yet")


def test_redact_strips_credentials_and_query_strings() -> None:
    text = "cannot reach LiveKit at wss://user:pw@lk.example.com/x?access_token=abc.def after 2 attempts"
    assert redact(text) == "cannot reach LiveKit at wss://lk.example.com/x after 2 attempts"
    assert redact("refused by 127.0.0.1:7880 (no server listening there?)") == (
        "refused by 127.0.0.1:7880 (no server listening there?)"
    )


def test_readiness_is_logged_once_per_change_of_cause(caplog: pytest.LogCaptureFixture) -> None:
    book = ReadinessLog()
    with caplog.at_level(logging.INFO, logger="framepool.ops"):
        for verdict in [
            Verdict(False, "draining", "draining: 2 job(s) finishing, no new jobs"),
            Verdict(False, "draining", "draining: 1 job(s) finishing, no new jobs"),
            Verdict(True),
            Verdict(True),
            Verdict(False, "reconnecting", "agent a/JT_ROOM: reconnecting to LiveKit"),
        ]:
            book.observe(verdict)
    assert caplog.messages == [
        "readiness: not ready: draining: 2 job(s) finishing, no new jobs",
        "readiness: ready",
        "readiness: not ready: agent a/JT_ROOM: reconnecting to LiveKit",
    ]


def test_the_process_sampler_reads_each_pid_once_per_ttl() -> None:
    now = [0.0]
    sampler = ProcessSampler(ttl=1.0, clock=lambda: now[0])
    first = sampler.figures([os.getpid()])[os.getpid()]
    assert first.pss_bytes > 0
    spent = time.process_time() + 0.05
    while time.process_time() < spent:  # CPU time a fresh read shows (clock ticks are 10 ms)
        pass
    now[0] = 0.5
    assert sampler.figures([os.getpid()])[os.getpid()] == first  # cached
    now[0] = 1.0
    assert sampler.figures([os.getpid()])[os.getpid()].cpu_seconds > first.cpu_seconds
    assert sampler.figures([2**22 + 1])[2**22 + 1] == (0.0, 0)  # above pid_max's limit: gone reads as zeros


def test_probe_says_in_one_line_that_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = sock.getsockname()[1]
        healthy, line = probe(f"http://127.0.0.1:{port}/livez", timeout=2.0)
    assert (healthy, line) == (False, f"cannot reach http://127.0.0.1:{port}/livez: Connection refused")


def test_the_default_url_asks_a_wildcard_address_on_loopback() -> None:
    assert livez_url(Settings()) == "http://127.0.0.1:8081/livez"
    assert livez_url(Settings(http_host="::", http_port=9000)) == "http://[::1]:9000/livez"
    assert livez_url(Settings(http_host="10.0.0.5")) == "http://10.0.0.5:8081/livez"
