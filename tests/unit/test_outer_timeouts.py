"""Every inner timeout is paired with its outer killer: systemd's and Docker's stop timeouts exceed the
stop budget (`framepool.service.stop_budget`, the sum of the ladder's rungs, each of which the Supervisor
cuts at its own budget), and the budget the deployment files state in comments is the one the code computes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import msgspec

from framepool import settings as settings_module
from framepool.errors import ExitStatus
from framepool.service import StopBudget, stop_budget
from framepool.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = (ROOT / "systemd" / "framepool.service").read_text()
COMPOSE = (ROOT / "docker-compose.yml").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def example_environment() -> dict[str, str]:
    """systemd/framepool.env, which the unit's EnvironmentFile and compose's env_file name."""
    lines = (ROOT / "systemd" / "framepool.env").read_text().splitlines()
    pairs = (line.split("#", 1)[0].strip().partition("=") for line in lines)
    return {key: value for key, sep, value in pairs if sep and key}


def budgets() -> list[StopBudget]:
    """With the defaults, and with the example environment the deployment files ship."""
    return [stop_budget(Settings()), stop_budget(settings_module.load(environ=example_environment()))]


def stated_budget(text: str) -> str:
    match = re.search(r"^# stop budget with the defaults: (.+)$", text, re.M)
    assert match, "the file must state the stop budget with the defaults"
    return match.group(1)


def test_systemd_stop_timeout_exceeds_the_stop_budget() -> None:
    match = re.search(r"^TimeoutStopSec=(\d+)$", UNIT, re.M)
    assert match, "framepool.service must set TimeoutStopSec"
    for budget in budgets():
        assert float(match.group(1)) > budget.total, budget.describe()


def test_docker_stop_grace_exceeds_the_stop_budget() -> None:
    compose = re.search(r"stop_grace_period:\s*(\d+)s", COMPOSE)
    assert compose, "docker-compose.yml must set stop_grace_period"
    documented = re.search(r"--stop-timeout (\d+)", DOCKERFILE)
    assert documented, "the Dockerfile must show docker run's --stop-timeout"
    for budget in budgets():
        assert float(compose.group(1)) > budget.total, budget.describe()
        assert float(documented.group(1)) > budget.total, budget.describe()
    assert "STOPSIGNAL SIGTERM" in DOCKERFILE


def test_the_stated_budget_is_the_computed_one() -> None:
    for text in (UNIT, COMPOSE, DOCKERFILE):
        assert stated_budget(text) == stop_budget(Settings()).describe()


def test_systemd_unit_is_notify_with_sigterm() -> None:
    assert re.search(r"^Type=notify$", UNIT, re.M)
    assert re.search(r"^KillSignal=SIGTERM$", UNIT, re.M)


def test_systemd_does_not_restart_what_a_restart_cannot_fix() -> None:
    match = re.search(r"^RestartPreventExitStatus=(.+)$", UNIT, re.M)
    assert match
    codes = {int(code) for code in match.group(1).split()}
    assert codes == {ExitStatus.CONFIG, ExitStatus.POOL_HALTED}


def test_the_command_prints_the_budget_for_the_effective_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "framepool.cli", "config", "--stop-budget", "--drain-timeout", "30"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    expected = stop_budget(msgspec.structs.replace(Settings(), drain_timeout=30.0)).describe()
    assert result.stdout.strip() == expected and expected.startswith("56.5 s (drain 30 + ")
