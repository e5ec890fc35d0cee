"""Every inner timeout is paired with its outer killer: systemd's, Docker's and Kubernetes' stop timeouts
exceed the stop budget (`framepool.service.stop_budget`, the sum of the ladder's rungs, each of which the
Supervisor cuts at its own budget), and the budget the deployment files state in comments is the one
`framepool config --stop-budget` prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import yaml

from framepool import settings as settings_module
from framepool.errors import ExitStatus
from framepool.service import StopBudget, stop_budget
from framepool.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = (ROOT / "systemd" / "framepool.service").read_text()
COMPOSE = (ROOT / "docker-compose.yml").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
K8S = ROOT / "deploy" / "k8s"
DEPLOYMENT = (K8S / "deployment.yaml").read_text()


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


def test_kubernetes_grace_period_exceeds_the_stop_budget(tmp_path: Path) -> None:
    """With the defaults, and with the settings the Deployment gives: its environment and its ConfigMap's
    framepool.toml."""
    pod = yaml.safe_load(DEPLOYMENT)["spec"]["template"]["spec"]
    environ = {
        variable["name"]: variable["value"] for variable in pod["containers"][0]["env"] if "value" in variable
    }
    config = tmp_path / "framepool.toml"
    config.write_text(yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]["framepool.toml"])
    deployed = stop_budget(settings_module.load(config_file=config, environ=environ))
    for budget in (stop_budget(Settings()), deployed):
        assert pod["terminationGracePeriodSeconds"] > budget.total, budget.describe()


def test_the_stated_budget_is_the_one_the_command_prints() -> None:
    environ = {
        key: value for key, value in os.environ.items() if not key.startswith(("FRAMEPOOL_", "LIVEKIT_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "framepool.cli", "config", "--stop-budget"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=environ,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == stop_budget(Settings()).describe()
    for text in (UNIT, COMPOSE, DOCKERFILE, DEPLOYMENT):
        assert stated_budget(text) == result.stdout.strip()


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
