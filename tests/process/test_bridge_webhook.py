"""The bridge process delivering a spool to a real aiohttp webhook receiver on loopback (real processes,
real files, real HTTP): retries with the same id and a valid signature, dead letters, an outage, SIGKILL of
the bridge, checkpoints across restarts, a bad config, and its death with the supervisor."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import psutil
import pytest

from framepool.bridge.process import BridgeExit, BridgeStart
from framepool.bridge.registry import SinkSpec
from framepool.bridge.runner import DEAD_LETTER, DeliveryOptions
from framepool.bridgehost import BridgeHost
from framepool.ipc.spool import SpoolWriter, sink_spool
from framepool.processors.messages import DataMessage, new_event_id
from tests.support.daemon import ROOT, is_bridge
from tests.support.timeouts import EVENT, ORPHANS_GONE, PROCESS
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.process

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST = DeliveryOptions(batch_max=50, batch_ms=5, retry_initial=0.05, retry_max=0.4)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver(SECRET)
    await hook.start()
    yield hook
    await hook.stop()


def start_document(spool_dir: Path, url: str, batch: bool = False) -> BridgeStart:
    options = {"url": url, "secret": SECRET, "batch": batch, "timeout": 2.0}
    sink = SinkSpec(name="hook", type="webhook", options=options)
    return BridgeStart(
        spool_dir=str(spool_dir), sinks=[sink], delivery=FAST, stop_timeout=5.0, parent_pid=os.getpid()
    )


@pytest.fixture
def spool(tmp_path: Path) -> AsyncIterator[SpoolWriter]:
    writer = SpoolWriter(sink_spool(tmp_path, "hook"), max_bytes=64 << 20)
    yield writer
    writer.close()


async def running(document: BridgeStart) -> BridgeHost:
    host = BridgeHost(document, restart_backoff=0.05, restart_backoff_max=0.2)
    host.start()
    await asyncio.wait_for(host.ready.wait(), PROCESS)
    return host


def event(seq: int, room: str = "room-a", topic: str = "votes") -> DataMessage:
    return DataMessage(
        event_id=new_event_id(), seq=seq, job="J", room=room, kind="packet", topic=topic, sender="alice",
        sender_kind="standard", received_us=seq, payload=b'{"vote": "yes"}' if seq % 2 else b"\xff\x00raw",
    )  # fmt: skip


def assert_room_order(delivered: list[dict[str, object]]) -> None:
    """Per room, the first delivery of each event comes in seq order (redeliveries may repeat older ones)."""
    seen: set[object] = set()
    last: dict[object, int] = {}
    for item in delivered:
        if item["event_id"] in seen:
            continue
        seen.add(item["event_id"])
        seq = int(item["seq"])  # type: ignore[call-overload]
        assert seq > last.get(item["room"], 0), f"{item['room']}: seq {seq} after {last[item['room']]}"
        last[item["room"]] = seq


async def test_503_n_times_then_200_is_n_plus_1_attempts_with_one_id_all_signed(
    tmp_path: Path, receiver: WebhookReceiver, spool: SpoolWriter
) -> None:
    receiver.answers.extend([503, 503, 503])
    receiver.retry_after = "0"
    host = await running(start_document(tmp_path, receiver.url))
    sent = event(1)
    assert spool.append(sent)
    await receiver.wait_for_events(1)
    assert [attempt.status for attempt in receiver.attempts] == [503, 503, 503, 200]
    assert {attempt.webhook_id for attempt in receiver.attempts} == {sent.event_id}
    assert all(attempt.verified for attempt in receiver.attempts)
    assert receiver.delivered()[0]["payload"] == '{"vote": "yes"}'
    assert await host.stop() == BridgeExit.OK


async def test_400_goes_to_the_dead_letter_file_and_delivery_goes_on(
    tmp_path: Path, receiver: WebhookReceiver, spool: SpoolWriter
) -> None:
    receiver.refuse = lambda item: 400 if item["topic"] == "bad" else None
    host = await running(start_document(tmp_path, receiver.url))
    sent = [event(1), event(2, topic="bad"), event(3)]
    for item in sent:
        assert spool.append(item)
    await receiver.wait_for_events(2)
    assert await host.stop() == BridgeExit.OK  # caught up: the dead letter is written before the checkpoint
    assert [item["seq"] for item in receiver.delivered()] == [1, 3]
    lines = (sink_spool(tmp_path, "hook") / DEAD_LETTER).read_text().splitlines()
    assert [json.loads(line)["event"]["event_id"] for line in lines] == [sent[1].event_id]
    assert "400" in json.loads(lines[0])["reason"]
    assert json.loads(lines[0])["event"]["payload_base64"] == "/wByYXc="  # bytes that are not UTF-8


@pytest.mark.parametrize(
    ("batch", "down_seconds"), [(False, 3.0), (True, 60.0)], ids=["single-3s", "batched-60s"]
)
async def test_receiver_down_then_back_everything_arrives_in_room_order(
    tmp_path: Path, receiver: WebhookReceiver, spool: SpoolWriter, batch: bool, down_seconds: float
) -> None:
    """The receiver goes away for `down_seconds` (a minute, as a deploy of it may take) while events keep
    coming; when it is back, every event arrives, per-room order kept, every signature valid."""
    document = start_document(tmp_path, receiver.url, batch=batch)
    # Retries back off up to 2 s (the default allows 30 s: the wait after the outage would dominate).
    document = msgspec.structs.replace(
        document, delivery=msgspec.structs.replace(document.delivery, retry_max=2.0)
    )
    host = await running(document)
    rooms = ("room-a", "room-b")
    seq = {room: 0 for room in rooms}

    def append(count: int) -> None:
        for index in range(count):
            room = rooms[index % 2]
            seq[room] += 1
            assert spool.append(event(seq[room], room))

    append(20)
    await receiver.wait_for_events(20)
    await receiver.stop()
    append(100)
    await asyncio.sleep(down_seconds / 2)  # the outage itself is what is tested: appends before and during it
    append(100)
    await asyncio.sleep(down_seconds / 2)
    await receiver.start()
    await receiver.wait_for_events(220, within=EVENT + 2.0)
    assert_room_order(receiver.delivered())
    assert all(attempt.verified for attempt in receiver.attempts)
    assert await host.stop() == BridgeExit.OK


async def test_a_bridge_killed_with_sigkill_is_restarted_and_nothing_is_lost(
    tmp_path: Path, receiver: WebhookReceiver, spool: SpoolWriter
) -> None:
    host = await running(start_document(tmp_path, receiver.url, batch=True))
    sent = 0
    for _kill in range(2):
        for _ in range(1500):
            sent += 1
            assert spool.append(event(sent, ("room-a", "room-b", "room-c")[sent % 3]))
        await receiver.wait_for_events(
            sent - 1400
        )  # this bridge (the first, then the restarted one) delivers
        pid = host.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    await receiver.wait_for_events(sent, PROCESS)
    assert len(receiver.delivered_ids()) == sent  # every event at least once, none invented
    assert_room_order(receiver.delivered())
    assert host.exit_codes == [-signal.SIGKILL, -signal.SIGKILL] and host.restarts == 2
    assert await host.stop() == BridgeExit.OK


async def test_the_checkpoint_survives_a_restart_of_the_bridge(
    tmp_path: Path, receiver: WebhookReceiver, spool: SpoolWriter
) -> None:
    host = await running(start_document(tmp_path, receiver.url))
    for seq in range(1, 31):
        spool.append(event(seq))
    await receiver.wait_for_events(30)
    assert await host.stop() == BridgeExit.OK
    host = await running(start_document(tmp_path, receiver.url))
    spool.append(event(31))
    await receiver.wait_for_events(31)
    assert [item["seq"] for item in receiver.delivered()] == list(range(1, 32))  # nothing delivered twice
    assert await host.stop() == BridgeExit.OK


async def test_a_bad_sink_config_halts_the_host_instead_of_restarting(tmp_path: Path) -> None:
    sink = SinkSpec(name="hook", type="webhook", options={"url": "ftp://nowhere"})
    host = BridgeHost(BridgeStart(spool_dir=str(tmp_path), sinks=[sink]), restart_backoff=0.05)
    host.start()
    assert await asyncio.wait_for(host.finished(), PROCESS) == BridgeExit.CONFIG
    assert host.halted and host.restarts == 0


async def test_the_bridge_dies_with_its_supervisor(tmp_path: Path, receiver: WebhookReceiver) -> None:
    document = start_document(tmp_path, receiver.url)
    script = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.bridgehost_script", cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert script.stdin is not None and script.stdout is not None
    script.stdin.write(msgspec.json.encode(document))
    script.stdin.close()
    bridge_pid = int(await asyncio.wait_for(script.stdout.readline(), PROCESS))
    bridge = psutil.Process(bridge_pid)
    script.send_signal(signal.SIGKILL)
    await asyncio.wait_for(script.wait(), EVENT)
    _, alive = psutil.wait_procs([bridge], timeout=ORPHANS_GONE)
    assert not alive, f"bridge {bridge_pid} outlived its supervisor"


async def test_a_stop_during_a_restart_stops_the_bridge_that_was_starting(
    tmp_path: Path, receiver: WebhookReceiver, spool: SpoolWriter
) -> None:
    """stop() right after the bridge died, while the host is starting its replacement: the replacement is
    stopped too (it once ran on unsignalled and stop() never returned), and no bridge process is left."""
    for attempt in range(5):
        host = BridgeHost(
            start_document(tmp_path, receiver.url), restart_backoff=0.0, restart_backoff_max=0.0
        )
        host.start()
        await asyncio.wait_for(host.ready.wait(), PROCESS)
        pid = host.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.01 * attempt)  # somewhere in the restart: reaping, spawning, starting up
        await asyncio.wait_for(host.stop(), PROCESS)
        children = psutil.Process().children(recursive=True)
        assert not [c for c in children if is_bridge(c)]
