"""The README's code is executed here, so what it shows keeps working."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from framepool.processors import AudioFormat, AudioFrame

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


class RecordingContext:
    """Collects what a processor emits (unit tier: the pool's real context is exercised in tests/process)."""

    stream_id = "s"
    labels: dict[str, str] = {}

    def __init__(self) -> None:
        self.emitted: list[tuple[str, Any]] = []

    def emit(self, topic: str, payload: Any) -> None:
        self.emitted.append((topic, payload))


def block_defining(name: str) -> dict[str, Any]:
    source = next(block for block in PYTHON_BLOCKS if name in block)
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(source, "README.md", "exec"), namespace)
    return namespace


def test_readme_processor_example_runs() -> None:
    namespace = block_defining("class Clipping")
    clipping = namespace["Clipping"]
    assert clipping.Params is namespace["ClippingParams"]  # taken from the type argument
    params = clipping.Params(threshold=30000)
    assert clipping.input_format(params) == AudioFormat(sample_rate=48000, channels=1, frame_ms=20)
    processor = clipping(params)
    samples = np.zeros((960, 1), np.int16)
    samples[:3] = 32767
    ctx = RecordingContext()
    processor.process(AudioFrame(samples, 48000, 1, time_us=7, seq=0, gap=False), ctx)
    assert ctx.emitted == [("clipping", {"samples": 3, "time_us": 7})]


def test_readme_agent_example_registers_one_agent() -> None:
    server = block_defining("AgentServer()")["server"]
    [agent] = server.agents
    assert (agent.agent_name, agent.job_type) == ("meter", "room")


def test_readme_toml_example_is_valid_settings(tmp_path: Path) -> None:
    from framepool.processors import parse_specs, resolve
    from framepool.settings import load

    blocks = [
        text for text in re.findall(r"```toml\n(.*?)```", README, re.S) if 'agent_name = "meter"' in text
    ]
    assert len(blocks) == 2  # the quick start's and the configuration section's
    for toml_text in blocks:
        config = tmp_path / "framepool.toml"
        config.write_text(toml_text)
        settings = load(config, environ={})
        [agent] = settings.agents
        assert (agent.agent_name, agent.job_type, agent.topic) == ("meter", "room", "analysis")
        for spec in parse_specs(",".join(agent.audio + agent.video)):
            resolve(spec)  # every processor named there exists and takes those parameters


def test_readme_data_flow_example_builds(tmp_path: Path) -> None:
    """The live poll of "Room data": valid settings, a data flow that compiles, a sink whose options check."""
    from framepool.agent.declarative import build_agents
    from framepool.bridge import registry
    from framepool.settings import load

    [poll] = [
        text for text in re.findall(r"```toml\n(.*?)```", README, re.S) if 'agent_name = "poll"' in text
    ]
    config = tmp_path / "framepool.toml"
    config.write_text(poll)
    settings = load(config, environ={})
    [agent] = build_agents(settings.agents)
    assert agent.agent_name == "poll"
    [sink] = settings.sinks
    registry.sink_config(sink)
