"""The sink configurations the docs show are ones framepool accepts: each TOML example of docs/sinks.md and
docs/dataflows.md with [[sinks]] loads as settings, and each sink's options validate against its Config."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from framepool.bridge import registry
from framepool.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLES = [
    (path.name, block)
    for path in (DOCS / "sinks.md", DOCS / "dataflows.md")
    for block in re.findall(r"```toml\n(.*?)```", path.read_text(), re.S)
    if "[[sinks]]" in block
]


def test_the_docs_show_sink_examples() -> None:
    assert {name for name, _ in EXAMPLES} == {"sinks.md", "dataflows.md"}


@pytest.mark.parametrize(("doc", "block"), EXAMPLES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EXAMPLES)])
def test_each_documented_sink_config_is_accepted(doc: str, block: str) -> None:
    settings = msgspec.convert(tomllib.loads(block), Settings)
    builtin = [spec for spec in settings.sinks if spec.type in registry.BUILTIN]
    assert settings.sinks, doc
    for index, spec in enumerate(builtin):
        registry.sink_config(spec, index)  # ConfigError if an option is wrong
