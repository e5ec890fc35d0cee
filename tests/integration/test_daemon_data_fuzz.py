"""Hostile room data against a real `framepool start --config`: random bytes, malformed and valid JSON,
random topics, attribute churn and streams far over the cap, through a data flow that parses JSON. The
daemon neither crashes nor buffers what it refuses (its memory stays flat while 40 MiB of oversize streams
arrive), every packet reaches the sink (byte for byte, or as the same JSON value where the transform stage
re-encoded it), and each oversize stream is counted.

The inputs come from a seeded generator (the same every run, reported on failure); hypothesis fuzzes the
data-flow stages themselves in tests/unit/test_dataflow_pipeline.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import signal
from pathlib import Path

import psutil
import pytest

from framepool.devserver.server import DevServer
from tests.support.daemon import exit_status, logged, read_log, start_with_config
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.sdk import agent_of, joined
from tests.support.timeouts import EVENT, PROCESS
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.integration

SEED = 20261203
PACKETS = 300
OVERSIZE = 20  # streams of 2 MiB each, against a 256 KiB cap
CONFIG = """
spool_dir = "{spool}"
data_stream_max_bytes = 262144
data_sender_rate = 100000.0

[[sinks]]
name = "hook"
type = "webhook"
[sinks.options]
url = "{url}"
batch = true

[[agents]]
[[agents.data.transform]]
name = "parse"
match = {{ topic = "json.*" }}
expression = "payload"
non_json = "pass"
[[agents.data.route]]
match = {{ kind = ["packet"] }}
to_bridges = ["hook"]
"""


def random_packets(rng: random.Random) -> list[tuple[str, bytes]]:
    """(topic, payload): random bytes, malformed JSON, valid JSON, empty; topics of any characters."""
    packets = []
    for n in range(PACKETS):
        shape = n % 4
        if shape == 0:
            payload = rng.randbytes(rng.randrange(0, 2000))
        elif shape == 1:
            payload = b'{"a": [1, 2, {"b": "' + rng.randbytes(rng.randrange(0, 50)) + b'"'  # never closed
        elif shape == 2:
            payload = json.dumps({"n": n, "v": rng.random(), "s": "é" * rng.randrange(0, 20)}).encode()
        else:
            payload = b""
        alphabet = "abcxyz.*_-/ é中🎥\u200b"
        topic = ("json." if shape in (1, 2) else "") + "".join(
            rng.choice(alphabet) for _ in range(rng.randrange(0, 24))
        )
        packets.append((topic, payload))
    return packets


async def test_hostile_room_data_is_counted_not_buffered(
    devserver: DevServer, room_name: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    receiver = WebhookReceiver(secret="")
    await receiver.start()
    config = tmp_path / "framepool.toml"
    config.write_text(CONFIG.format(spool=tmp_path / "spool", url=receiver.url))
    process = await start_with_config(devserver.url, API_KEY, API_SECRET, config)
    seen: list[str] = []
    packets = random_packets(rng)
    try:
        arrived = asyncio.Event()
        reading = asyncio.ensure_future(read_log(process, seen, arrived))
        await asyncio.wait_for(logged(seen, arrived, "registered 1 agent"), PROCESS)
        daemon = psutil.Process(process.pid)
        async with joined(devserver, "mallory", room_name, can_update_own_metadata=True) as mallory:
            agent = await asyncio.wait_for(agent_of(mallory), PROCESS)
            me, to_agent = mallory.local_participant, [agent.identity]
            await me.send_bytes(b"warm-up", topic="blob", destination_identities=to_agent)
            before = daemon.memory_info().rss
            for n, (topic, payload) in enumerate(packets):
                await me.publish_data(payload, topic=topic, destination_identities=to_agent)
                if n % 15 == 0:
                    await me.set_attributes({f"k{rng.randrange(5)}": rng.randbytes(8).hex()})
            for _ in range(OVERSIZE):
                await me.send_bytes(rng.randbytes(2 << 20), topic="huge", destination_identities=to_agent)
            await receiver.wait_for_events(PACKETS, within=EVENT * 2)
            await asyncio.wait_for(logged(seen, arrived, "over data_stream_max_bytes", OVERSIZE), EVENT)
            after = daemon.memory_info().rss
        process.send_signal(signal.SIGTERM)
        reading.cancel()
        status, log = await exit_status(process, seen)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await receiver.stop()
    assert status == 0, log
    assert log.count("over data_stream_max_bytes") == OVERSIZE, f"seed {SEED}"
    assert after - before < 20 << 20, f"the daemon grew {(after - before) >> 20} MiB (seed {SEED})"
    delivered = [e for e in receiver.delivered() if e["kind"] == "packet"]
    got = [(e["topic"], _payload(e)) for e in delivered]
    assert [topic for topic, _ in got] == [topic for topic, _ in packets], f"seed {SEED}"
    for (_, sent), (_, arrived) in zip(packets, got, strict=True):
        assert _same(sent, arrived), f"seed {SEED}: {sent[:40]!r} became {arrived[:40]!r}"


def _same(sent: bytes, arrived: bytes) -> bool:
    """Byte for byte, except JSON the transform stage parsed and re-encoded (the same value)."""
    try:
        return sent == arrived or bool(json.loads(sent) == json.loads(arrived))
    except ValueError:
        return False


def _payload(event: dict[str, object]) -> bytes:
    if "payload_base64" in event:
        return base64.b64decode(str(event["payload_base64"]))
    return str(event.get("payload", "")).encode()
