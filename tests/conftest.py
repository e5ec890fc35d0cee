"""Settings of every tier (test process): pytest-timeout's per-test limit from tests/support/timeouts.py.

Nothing here may import the dev-server extra: the unit tier runs without it (`make unit-minimal`).
"""

from __future__ import annotations

import os

import pytest

from tests.support import timeouts


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Before pytest-timeout reads its settings: the scaled limit, unless --timeout or PYTEST_TIMEOUT."""
    if config.getoption("timeout", None) is None and "PYTEST_TIMEOUT" not in os.environ:
        config.option.timeout = timeouts.PER_TEST
