"""A real `framepool start --config` with a declarative data flow and a webhook sink: data packets sent in
the room reach the webhook through the spool and the bridge process, and on SIGTERM the daemon stops its
bridge within the stop ladder (a "stop bridges" rung), exits 0 and leaves no process behind."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import psutil
import pytest

from framepool.devserver.server import DevServer
from tests.support.daemon import assert_gone, exit_status, is_bridge, logged, read_log, start_with_config
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.sdk import agent_of, joined
from tests.support.timeouts import EVENT, PROCESS
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.integration

CONFIG = """
spool_dir = "{spool}"

[[sinks]]
name = "hook"
type = "webhook"
[sinks.options]
url = "{url}"
secret = "{secret}"

[[agents]]
agent_name = ""
[[agents.data.route]]
match = {{ topic = "telemetry" }}
to_bridges = ["hook"]
"""


async def test_a_configured_data_flow_reaches_its_webhook_and_the_daemon_stops_clean(
    devserver: DevServer, room_name: str, tmp_path: Path
) -> None:
    receiver = WebhookReceiver(secret="whsec_c2VjcmV0")
    await receiver.start()
    config = tmp_path / "framepool.toml"
    config.write_text(CONFIG.format(spool=tmp_path / "spool", url=receiver.url, secret=receiver.secret))
    process = await start_with_config(devserver.url, API_KEY, API_SECRET, config)
    seen: list[str] = []
    try:
        arrived = asyncio.Event()
        reading = asyncio.ensure_future(read_log(process, seen, arrived))
        await asyncio.wait_for(logged(seen, arrived, "registered 1 agent"), PROCESS)
        async with joined(devserver, "sensor", room_name) as sensor:
            agent = await asyncio.wait_for(agent_of(sensor), PROCESS)
            children = psutil.Process(process.pid).children(recursive=True)
            bridges = [child for child in children if is_bridge(child)]
            for n in range(20):
                payload = json.dumps({"n": n}).encode()
                await sensor.local_participant.publish_data(
                    payload, topic="telemetry", destination_identities=[agent.identity]
                )
            await receiver.wait_for_events(20, within=EVENT)
        process.send_signal(signal.SIGTERM)
        reading.cancel()
        status, log = await exit_status(process, seen)
        assert status == 0, log
        assert "stop ladder: stop bridges" in log and "cut short" not in log, log
        await assert_gone([child.pid for child in children])
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await receiver.stop()
    delivered = receiver.delivered()
    assert [json.loads(e["payload"])["n"] for e in delivered][:20] == list(range(20))
    assert all(attempt.verified for attempt in receiver.attempts)
    assert bridges  # it ran, as its own process
