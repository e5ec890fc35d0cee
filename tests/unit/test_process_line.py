"""The process line, read from the source with `ast`: supervisor code never imports the worker package,
the worker never imports supervisor code, and the bridge process imports neither. Both sides meet only in
what either may import: `ipc/` (the control channel, the rings, the spool, the worker's entry point and exit
codes), `processors/`, settings, logs, errors.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DAEMON = Path(__file__).resolve().parents[2] / "daemon"

# Modules (relative to daemon/, i.e. to the package framepool) that run in the supervisor or its own
# helper processes (the dev server), never in a worker.
SUPERVISOR_SIDE = (
    "pool/",
    "agent/",
    "dataflow/",
    "bridgehost.py",
    "offline/",
    "devserver/",
    "demo/",
    "ops/",
    "service.py",
    "cli.py",
    "signals.py",
    "loop.py",
    "sdnotify.py",
    "sdreports.py",
    "tasks.py",
)
WORKER_SIDE = ("worker/",)
SUPERVISOR_PACKAGES = (
    "framepool.pool",
    "framepool.agent",
    "framepool.dataflow",
    "framepool.bridge",
    "framepool.bridgehost",
    "framepool.offline",
    "framepool.devserver",
    "framepool.demo",
    "framepool.ops",
    "framepool.service",
    "framepool.cli",
    "framepool.signals",
    "framepool.loop",
    "framepool.sdnotify",
    "framepool.sdreports",
    "framepool.tasks",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(DAEMON).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["framepool", *parts])


def imports_of(path: Path) -> set[str]:
    return imported_modules(path.read_text(), module_name(path), path.name == "__init__.py")


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module `source` imports, anywhere in it (lazy imports inside functions count), fully qualified:
    `from framepool import worker` counts as framepool.worker, `importlib.import_module("x")` as x."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def modules_under(prefixes: tuple[str, ...]) -> list[Path]:
    paths = sorted(DAEMON.rglob("*.py"))
    chosen = [p for p in paths if p.relative_to(DAEMON).as_posix().startswith(prefixes)]
    assert chosen, f"no modules under {prefixes}: did the layout move?"
    return chosen


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


@pytest.mark.parametrize(
    "path", modules_under(SUPERVISOR_SIDE), ids=lambda p: p.relative_to(DAEMON).as_posix()
)
def test_supervisor_code_does_not_import_the_worker(path: Path) -> None:
    crossing = sorted(name for name in imports_of(path) if within(name, ("framepool.worker",)))
    assert not crossing, f"{path.relative_to(DAEMON)} imports {crossing}: reach workers through framepool.ipc"


@pytest.mark.parametrize("path", modules_under(WORKER_SIDE), ids=lambda p: p.relative_to(DAEMON).as_posix())
def test_worker_code_does_not_import_supervisor_code(path: Path) -> None:
    crossing = sorted(name for name in imports_of(path) if within(name, SUPERVISOR_PACKAGES))
    assert not crossing, f"{path.relative_to(DAEMON)} imports {crossing}: only ipc, processors, settings, ..."


@pytest.mark.parametrize("path", modules_under(("bridge/",)), ids=lambda p: p.relative_to(DAEMON).as_posix())
def test_the_bridge_process_imports_neither_side(path: Path) -> None:
    """The bridge process meets the supervisor only through the spool (framepool.ipc.spool)."""
    others = (*(p for p in SUPERVISOR_PACKAGES if not p.startswith("framepool.bridge")), "framepool.worker")
    crossing = sorted(name for name in imports_of(path) if within(name, others))
    assert not crossing, f"{path.relative_to(DAEMON)} imports {crossing}: the spool is the bridge's only door"


def test_the_check_sees_every_form_of_import() -> None:
    """The walker itself: absolute, from-package, relative and lazy imports, and import_module."""
    source = (
        "import framepool.worker.main\n"
        "from framepool import worker\n"
        "from ..worker import hosting\n"
        "def f():\n"
        "    from framepool.worker.scale import downscale\n"
        "    importlib.import_module('framepool.worker.runtime')\n"
    )
    assert imported_modules(source, "framepool.pool.process", is_package=False) >= {
        "framepool.worker.main",
        "framepool.worker",
        "framepool.worker.hosting",
        "framepool.worker.scale",
        "framepool.worker.runtime",
    }
