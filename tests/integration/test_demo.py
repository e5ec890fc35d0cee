"""`make demo` as a test (test process): the whole demo, short, must end with "demo OK" and its live poll's
summary (tally matching the votes, every vote at the webhook with a valid signature, nothing lost)."""

from __future__ import annotations

import pytest

from framepool.demo.__main__ import run_demo
from framepool.demo.poll import VOTES

pytestmark = pytest.mark.integration


async def test_the_demo_runs_its_media_and_its_live_poll(capsys: pytest.CaptureFixture[str]) -> None:
    status = await run_demo(seconds=3.0)
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.rstrip().endswith("demo OK")
    assert f"{len(VOTES):6d} votes sent by 4 voters" in out
    assert "'A': 2, 'B': 2}: matches" in out
    assert f"{len(VOTES):6d} votes delivered to the webhook" in out
    assert "0 bad signatures, per-voter order kept), 0 lost" in out
