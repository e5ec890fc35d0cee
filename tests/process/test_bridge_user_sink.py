"""A user's own sink (`module:Class`), the one docs/dataflows.md shows, run by the real bridge process."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from framepool.bridge.process import BridgeExit, BridgeStart
from framepool.bridge.registry import SinkSpec
from framepool.bridge.runner import DeliveryOptions
from framepool.bridgehost import BridgeHost
from framepool.ipc.spool import SpoolWriter, sink_spool
from framepool.processors.messages import DataMessage, new_event_id
from tests.support.daemon import ROOT
from tests.support.timeouts import PROCESS

pytestmark = pytest.mark.process


def test_the_docs_show_the_tested_sink() -> None:
    code = (ROOT / "tests/support/jsonl_sink.py").read_text()
    assert code[code.index("from __future__") :] in (ROOT / "docs/dataflows.md").read_text()


async def test_a_user_sink_receives_everything_once_across_a_restart(tmp_path: Path) -> None:
    out = tmp_path / "archive.jsonl"
    sink = SinkSpec(name="archive", type="tests.support.jsonl_sink:JsonLinesSink", options={"path": str(out)})
    document = BridgeStart(
        spool_dir=str(tmp_path), sinks=[sink], delivery=DeliveryOptions(batch_ms=1), parent_pid=os.getpid()
    )
    spool = SpoolWriter(sink_spool(tmp_path, "archive"), max_bytes=1 << 20)
    sent = []
    for run in range(2):
        host = BridgeHost(document)
        host.start()
        await asyncio.wait_for(host.ready.wait(), PROCESS)
        for seq in range(run * 20 + 1, run * 20 + 21):
            event = DataMessage(
                event_id=new_event_id(), seq=seq, job="J", room="r", kind="text", topic="lk.chat", sender="a",
                sender_kind="standard", received_us=seq, payload=f"message {seq}".encode(),
            )  # fmt: skip
            assert spool.append(event)
            sent.append(event.event_id)
        assert await host.stop() == BridgeExit.OK  # stopping delivers what the spool holds
    spool.close()
    assert [json.loads(line)["event_id"] for line in out.read_text().splitlines()] == sent
