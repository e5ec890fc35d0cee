"""`framepool config --check`: everything `start --config` would validate, nothing started (unit tier: the
real CLI entry point in this process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from framepool import cli

BAD = """
workers = 1
cpus = [0, 4095]
[[agents]]
agent_name = "a"
audio = ["audio-level(window_ms=abc)"]
[[agents]]
agent_name = "b"
video = ["no-such-proc"]
[[agents]]
agent_name = "c"
audio = ["audio-level"]
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(name, raising=False)


def test_every_problem_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "framepool.toml"
    config.write_text(BAD)
    assert cli.main(["config", "--check", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 4, err
    assert lines[0].startswith(
        "framepool: agents[0] (a) audio: processor 'audio-level': bad parameter: window_ms"
    )
    assert lines[1].startswith("framepool: agents[1] (b) video: unknown processor 'no-such-proc'")
    assert lines[2].startswith("framepool: missing LiveKit credentials: set LIVEKIT_URL, LIVEKIT_API_KEY")
    assert lines[3].startswith("framepool: bad setting cpus = [0, 4095]: CPU 4095 is not available")


def test_no_agents_is_one_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "framepool.toml"
    config.write_text('livekit_url = "ws://localhost:7880"\napi_key = "k"\napi_secret = "s"\n')
    assert cli.main(["config", "--check", "--config", str(config)]) == 2
    assert capsys.readouterr().err.startswith("framepool: no agents configured")


def test_a_good_configuration_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "framepool.toml"
    config.write_text('workers = 1\n[[agents]]\nagent_name = "m"\naudio = ["audio-level"]\n')
    monkeypatch.setenv("LIVEKIT_URL", "ws://localhost:7880")
    monkeypatch.setenv("LIVEKIT_API_KEY", "devkey")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "secret")
    assert cli.main(["config", "--check", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("configuration OK: 1 agents, 1 workers on CPUs") and err == ""


def test_a_processor_whose_output_is_its_track_needs_the_track() -> None:
    """privacy-blur without publish_video would fail every frame in publish_video: refused at start."""
    from framepool.agent.declarative import check_agents
    from framepool.settings import AgentSpec

    _agents, problems = check_agents([AgentSpec(agent_name="redact", video=["privacy-blur"])])
    assert len(problems) == 1 and "'privacy-blur' publishes its output as a track" in problems[0]
    assert "publish_video = true" in problems[0] and "\n" not in problems[0]
    agents, problems = check_agents(
        [AgentSpec(agent_name="redact", video=["privacy-blur"], publish_video=True)]
    )
    assert problems == [] and len(agents) == 1
