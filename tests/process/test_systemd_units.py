"""The systemd units as systemd 252 reads them (`systemd-analyze verify`: no complaint at all) and rates them
(`systemd-analyze security --offline=yes`: exposure at most 2.0), the template equal to the plain unit but
for what is per instance, and the sandbox the integration test reproduces being the one the units ask for.

Why 2.0: systemd calls up to 2.9 "OK" (2.0 to 2.9 are the scores of services hardened by the usual
checklists); the units score 1.2, and what remains is what the daemon needs (the network for LiveKit,
@resources for sched_setaffinity, a root directory with the venv in it). A bound at 2.0 lets a small
change pass and fails one that drops a whole protection (MemoryDenyWriteExecute or PrivateDevices alone
add 0.1 to 0.3; the system call filter or the dynamic user far more)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from framepool.service import stop_budget
from framepool.settings import Settings
from tests.support import systemd_sandbox
from tests.support.timeouts import PROCESS

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "framepool.service"
TEMPLATE = ROOT / "systemd" / "framepool@.service"
SHIPPED_EXEC = "/opt/framepool/.venv/bin/framepool"
MAX_EXPOSURE = 2.0
PER_INSTANCE = ("Description=", "EnvironmentFile=", "ExecStart=", "StateDirectory=", "RuntimeDirectory=")
PER_INSTANCE_TOO = ("WorkingDirectory=", "Environment=FRAMEPOOL_SPOOL_DIR=")


def installed_copy(unit: Path, directory: Path, name: str) -> Path:
    """The unit with ExecStart at this checkout's `framepool` (verify checks that the binary exists)."""
    executable = Path(sys.executable).parent / "framepool"
    assert executable.exists(), executable
    copy = directory / name
    copy.write_text(unit.read_text().replace(SHIPPED_EXEC, str(executable)))
    return copy


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=PROCESS, cwd=cwd, check=False
    )


@pytest.mark.parametrize(("unit", "name"), [(UNIT, "framepool.service"), (TEMPLATE, "framepool@.service")])
def test_systemd_verifies_the_units_without_a_word(unit: Path, name: str, tmp_path: Path) -> None:
    installed_copy(unit, tmp_path, name)
    target = name.replace("@", "@alpha")  # a template is verified through an instance of it
    result = analyze("verify", f"./{target}", cwd=tmp_path)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


def test_verify_does_complain_about_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: an unknown directive is reported."""
    copy = installed_copy(UNIT, tmp_path, "framepool.service")
    copy.write_text(copy.read_text().replace("LockPersonality=yes", "LockPersonalty=yes"))
    result = analyze("verify", "./framepool.service", cwd=tmp_path)
    assert "LockPersonalty" in result.stderr


@pytest.mark.parametrize(("unit", "name"), [(UNIT, "framepool.service"), (TEMPLATE, "framepool@.service")])
def test_the_exposure_is_low(unit: Path, name: str, tmp_path: Path) -> None:
    installed_copy(unit, tmp_path, name)
    target = name.replace("@", "@alpha")
    result = analyze("security", "--offline=yes", "--no-pager", f"./{target}", cwd=tmp_path)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def service_lines(unit: Path) -> list[str]:
    """The directives (no comments) from [Unit] on."""
    text = unit.read_text()
    lines = text[text.index("[Unit]") :].splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def test_the_template_is_the_unit_but_for_what_is_per_instance() -> None:
    unit, template = service_lines(UNIT), service_lines(TEMPLATE)
    per_instance = PER_INSTANCE + PER_INSTANCE_TOO
    assert [line for line in unit if not line.startswith(per_instance)] == [
        line for line in template if not line.startswith(per_instance)
    ]
    instance = [line for line in template if line.startswith(per_instance)]
    assert all("%i" in line for line in instance), instance
    assert "ExecStart=/opt/framepool/.venv/bin/framepool start --config /etc/framepool/%i.toml" in instance


def test_the_template_stop_timeout_exceeds_the_stop_budget() -> None:
    match = re.search(r"^TimeoutStopSec=(\d+)$", TEMPLATE.read_text(), re.M)
    assert match and float(match.group(1)) > stop_budget(Settings()).total


def test_the_reproduced_sandbox_is_the_one_the_units_ask_for() -> None:
    """tests/support/systemd_sandbox.py reproduces exactly these directives; change both together."""
    lines = set(service_lines(UNIT))
    assert {
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged",
        "SystemCallArchitectures=native",
        "MemoryDenyWriteExecute=yes",
        "RestrictNamespaces=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "DynamicUser=yes",
    } <= lines
    assert not any(line.startswith("SystemCallErrorNumber=") for line in lines)  # systemd's default: kill
    (families,) = (
        line.split("=", 1)[1].split() for line in lines if line.startswith("RestrictAddressFamilies=")
    )
    assert {getattr(socket, name) for name in families} == systemd_sandbox.ALLOWED_FAMILIES


def test_the_filter_keeps_what_pinning_and_the_rings_need_and_drops_privileged_calls() -> None:
    allowed = systemd_sandbox.allowed_syscalls()
    needed = {"sched_setaffinity", "sched_getaffinity", "memfd_create", "eventfd2", "futex", "pidfd_open"}
    needed |= {"prctl", "sendmsg", "recvmsg", "epoll_wait", "mmap", "clone", "execve", "ppoll"}
    assert needed <= allowed, needed - allowed
    assert not {"setuid", "setgroups", "chown", "fchown", "bpf", "init_module", "ptrace"} & allowed
