"""Every inner timeout is paired with its outer killer: systemd's and Docker's stop timeouts exceed the
drain ladder."""

import re
from pathlib import Path

from framepool.agent.server import REPORT_GRACE
from framepool.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def inner_stop_budget(settings: Settings) -> float:
    """The longest a SIGTERM may take: drain, then the jobs' shutdown ladder (one shared deadline) and the
    final status reports, then the pool: detaching streams and the worker ladder (ack, exit), one rung
    each."""
    return (
        settings.drain_timeout
        + settings.shutdown_timeout
        + REPORT_GRACE
        + 3 * settings.worker_shutdown_timeout
    )


def test_systemd_stop_timeout_exceeds_drain_ladder() -> None:
    unit = (ROOT / "systemd" / "framepool.service").read_text()
    match = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M)
    assert match, "framepool.service must set TimeoutStopSec"
    assert float(match.group(1)) > inner_stop_budget(Settings())


def test_systemd_unit_is_notify_with_sigterm() -> None:
    unit = (ROOT / "systemd" / "framepool.service").read_text()
    assert re.search(r"^Type=notify$", unit, re.M)
    assert re.search(r"^KillSignal=SIGTERM$", unit, re.M)


def test_docker_grace_exceeds_drain_ladder() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    match = re.search(r"stop_grace_period:\s*(\d+)s", compose)
    assert match, "docker-compose.yml must set stop_grace_period"
    assert float(match.group(1)) > inner_stop_budget(Settings())
    dockerfile = (ROOT / "Dockerfile").read_text()
    documented = re.search(r"--stop-timeout (\d+)", dockerfile)
    assert documented and float(documented.group(1)) > inner_stop_budget(Settings())
    assert "STOPSIGNAL SIGTERM" in dockerfile
