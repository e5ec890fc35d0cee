"""Settings of every tier (test process): pytest-timeout's per-test limit from tests/support/timeouts.py,
no HTTP endpoints by default, and the `shm_unchanged` fixture (no framepool memfd and no /dev/shm segment
left behind by the test).

Nothing here may import the dev-server extra: the unit tier runs without it (`make unit-minimal`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.support import timeouts
from tests.support.shm import shm_segments

# Daemons the tests start (in this process or as children, which inherit the environment) serve no HTTP
# unless a test asks for a port: a fixed default port would make concurrent daemons fail to start.
os.environ.setdefault("FRAMEPOOL_HTTP_PORT", "0")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Before pytest-timeout reads its settings: the scaled limit, unless --timeout or PYTEST_TIMEOUT."""
    if config.getoption("timeout", None) is None and "PYTEST_TIMEOUT" not in os.environ:
        config.option.timeout = timeouts.PER_TEST


@pytest.fixture
async def shm_unchanged() -> AsyncIterator[None]:
    """Fails the test if it leaves a framepool memfd open in this process or a segment in /dev/shm."""
    before = shm_segments()
    yield
    assert shm_segments() == before
