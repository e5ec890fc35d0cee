"""The container image as tests/image builds and runs it with podman (test process).

What each podman flag is for, on a machine like the one the tests run on (a VM whose root lacks
CAP_SYS_RESOURCE, with cgroups v1 plus a cgroup2 hierarchy that holds a controller, and no registry):
- `--runtime runc`: crun refuses this cgroup layout ("cgroups in hybrid mode not supported, drop all
  controllers from cgroupv2"); runc runs on it, and anywhere else podman does.
- `--ulimit`: podman's default limits (nofile 1048576) are above what root may set here ("setrlimit
  RLIMIT_NOFILE: Operation not permitted"); these are plenty for one daemon.
- `--network host`: the dev server the test starts listens on the host's loopback.
- BASE_IMAGE: no registry can be reached, so the Dockerfile's BASE (python:3.11-slim for real builds) is a
  Debian bookworm root filesystem that mmdebstrap makes from the Debian mirror apt uses, imported once;
  its python3 is Debian's 3.11, with the headers the ring extension compiles against.
- `--format docker`: the OCI image format has no HEALTHCHECK (podman drops it with a warning).
- pip's CA bundle and index reach the build as secrets (the Dockerfile says how), never a layer.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.daemon import ROOT

BASE_IMAGE = "localhost/framepool-base:bookworm"
IMAGE = "localhost/framepool:image-test"
PODMAN = ("podman", "--runtime", "runc")
LIMITS = ("--ulimit", "nofile=16384:16384", "--ulimit", "nproc=4096:4096")
# Every package the Dockerfile needs of a python:3.11-slim-like base (python-is-python3: `python`).
BASE_PACKAGES = "python3,python3-venv,python3-dev,python-is-python3,ca-certificates"
APT_SOURCES = Path("/etc/apt")


def podman(*args: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One podman command to its end; its output in the error when `check` and it fails."""
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args[:2])} exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result


def inspect(name: str, timeout: float) -> dict[str, Any]:
    """`podman inspect` of a container or an image."""
    records: list[dict[str, Any]] = json.loads(podman("inspect", name, timeout=timeout).stdout)
    return records[0]


def debian_sources() -> list[str]:
    """The apt source files that name Debian bookworm, as mmdebstrap takes them (paths), else the default
    mirror."""
    candidates = [APT_SOURCES / "sources.list", *sorted((APT_SOURCES / "sources.list.d").glob("*.sources"))]
    candidates += sorted((APT_SOURCES / "sources.list.d").glob("*.list"))
    found = [
        str(path)
        for path in candidates
        if path.is_file() and re.search(r"/debian\b.*bookworm", path.read_text(), re.S)
    ]
    return found or ["http://deb.debian.org/debian"]


def ensure_base_image(log: Path, timeout: float) -> None:
    """BASE_IMAGE, made once: mmdebstrap's tarball of a minimal bookworm piped into `podman import`."""
    if podman("image", "exists", BASE_IMAGE, timeout=timeout, check=False).returncode == 0:
        return
    with log.open("w") as errors:
        rootfs = subprocess.Popen(
            ["mmdebstrap", "--variant=minbase", "--mode=root", f"--include={BASE_PACKAGES}", "bookworm", "-",
             *debian_sources()],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
        )  # fmt: skip
        imported = subprocess.run(
            [*PODMAN, "import", "--change", 'CMD ["python3"]', "-", BASE_IMAGE],
            stdin=rootfs.stdout, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert rootfs.stdout is not None
        rootfs.stdout.close()
        made = rootfs.wait(timeout)
    if made != 0 or imported.returncode != 0:
        raise AssertionError(
            f"making {BASE_IMAGE} failed:\n{log.read_text()[-3000:]}{imported.stderr[-2000:]}"
        )


def pip_secrets(workdir: Path) -> list[str]:
    """`--secret` options carrying this machine's pip CA bundle and index (a pip.conf written for the
    build: local file:// indexes and find-links mean nothing inside it)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    config = {}  # `pip config list` prints scope.name='value', the environment's (:env:) last
    for line in listed.stdout.splitlines():
        key, _, value = line.partition("=")
        config[key.rpartition(".")[2]] = value.strip("'")
    options = []
    if cert := config.get("cert"):
        options += ["--secret", f"id=pip-ca.crt,src={cert}"]
    if (index := config.get("index-url", "")).startswith(("http://", "https://")):
        (workdir / "pip.conf").write_text(f"[global]\nindex-url = {index}\n")
        options += ["--secret", f"id=pip.conf,src={workdir / 'pip.conf'}"]
    return options


def build_image(workdir: Path, timeout: float) -> None:
    """IMAGE from the repository's Dockerfile FROM BASE_IMAGE (podman's layer cache makes a rebuild of
    unchanged sources quick); the image it replaces is removed, unless something still uses it."""
    previous = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, timeout=timeout, check=False)
    log = workdir / "build.log"
    with log.open("w") as output:
        built = subprocess.run(
            [*PODMAN, "build", "--runtime", "runc", "--network", "host", *LIMITS, "--format", "docker",
             "--build-arg", f"BASE={BASE_IMAGE}", *pip_secrets(workdir), "--tag", IMAGE, str(ROOT)],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, timeout=timeout,
        )  # fmt: skip
    if built.returncode != 0:
        raise AssertionError(f"podman build exited {built.returncode}:\n{log.read_text()[-4000:]}")
    old = previous.stdout.strip()
    if previous.returncode == 0 and old != inspect(IMAGE, timeout)["Id"]:
        podman("rmi", old, timeout=timeout, check=False)
