"""The shape the style guide asks of the package: modules under 500 lines, functions under 50."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for base in ("daemon", "processors") for p in (ROOT / base).rglob("*.py"))
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 50


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_and_function_sizes(path: Path) -> None:
    text = path.read_text()
    lines = text.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{lines} lines: split the module by role"
    long = [
        f"{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "functions over 50 lines: " + "; ".join(long)


def test_every_module_says_which_process_runs_it() -> None:
    words = ("supervisor", "worker", "bridge process", "both", "dev server", "any process", "imported by")
    silent = []
    for path in SOURCES:
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if not any(word in docstring.lower() for word in words):
            silent.append(str(path.relative_to(ROOT)))
    assert not silent, f"module docstrings that do not say which process runs them: {silent}"
