"""docs/settings.md is the generated settings reference: regenerate it with `make docs` when a field
changes."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_settings_reference_is_current() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "framepool.cli", "config", "--reference", "--markdown"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert generated.strip() in (ROOT / "docs" / "settings.md").read_text(), (
        "docs/settings.md is stale: run `make docs`"
    )
