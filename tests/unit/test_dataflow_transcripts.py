"""`[[transcripts]]`: final `lk.transcription` segments to bridges, one key per segment id."""

from __future__ import annotations

import uuid

from framepool.dataflow import ToBridge
from framepool.dataflow.transcripts import ATTRIBUTE_FINAL, ATTRIBUTE_SEGMENT_ID, segment_event_id
from framepool.processors.messages import DataMessage
from tests.support.dataflow import message, of_type, pipeline

FLOW = '[[transcripts]]\nto_bridges = ["pg", "hook"]'


def segment(text: str, segment_id: str, final: bool, **kwargs: object) -> DataMessage:
    attributes = {ATTRIBUTE_SEGMENT_ID: segment_id, ATTRIBUTE_FINAL: "true" if final else "false"}
    return message(text, kind="text", topic="lk.transcription", attributes=attributes, **kwargs)  # type: ignore[arg-type]


def test_final_segments_reach_every_bridge_keyed_by_segment_id() -> None:
    flow = pipeline(FLOW)
    sent = segment("hello there", "SG_1", final=True, sender="agent")
    out = of_type(flow.process(sent), ToBridge)
    assert [i.sink for i in out] == ["pg", "hook"]
    assert out[0].message.event_id == segment_event_id("room", "SG_1") == out[1].message.event_id
    assert uuid.UUID(out[0].message.event_id).version == 5
    assert out[0].message.payload == b"hello there" and out[0].message.sender == "agent"
    assert flow.stats()["pipeline"].get("unrouted", 0) == 0


def test_interim_segments_are_counted_not_delivered_by_default() -> None:
    flow = pipeline(FLOW)
    assert not flow.process(segment("hel", "SG_1", final=False))
    assert flow.stats()["transcripts:transcripts"]["interim"] == 1
    assert flow.stats()["pipeline"].get("unrouted", 0) == 0  # taken, on purpose not delivered


def test_a_segment_delivered_twice_goes_out_once() -> None:
    flow = pipeline(FLOW)
    assert flow.process(segment("a", "SG_1", final=True))
    assert not flow.process(segment("a", "SG_1", final=True))
    assert flow.stats()["transcripts:transcripts"]["repeats"] == 1


def test_the_memory_of_segments_is_bounded() -> None:
    flow = pipeline('[[transcripts]]\nto_bridges = ["pg"]\nremember_segments = 2')
    for name in ("SG_1", "SG_2", "SG_3"):
        assert flow.process(segment("x", name, final=True))
    assert flow.process(segment("x", "SG_1", final=True))  # forgotten: delivered again, same key downstream


def test_interims_when_asked_keep_their_own_event_ids() -> None:
    flow = pipeline('[[transcripts]]\nto_bridges = ["pg"]\nfinals_only = false')
    interim = segment("hel", "SG_1", final=False)
    (out,) = of_type(flow.process(interim), ToBridge)
    assert out.message.event_id == interim.event_id
    (final,) = of_type(flow.process(segment("hello", "SG_1", final=True)), ToBridge)
    assert final.message.event_id == segment_event_id("room", "SG_1")


def test_key_event_keeps_the_intake_event_id_and_other_topics_are_not_taken() -> None:
    flow = pipeline('[[transcripts]]\nto_bridges = ["pg"]\nkey = "event"')
    sent = segment("x", "SG_1", final=True)
    assert of_type(flow.process(sent), ToBridge)[0].message.event_id == sent.event_id
    assert not flow.process(message("hi", kind="text", topic="lk.chat"))
    assert not flow.process(message(b"x", topic="lk.transcription"))  # a packet, not a text stream
    assert flow.stats()["pipeline"]["unrouted"] == 2


def test_a_final_without_segment_id_is_delivered_under_its_own_id() -> None:
    flow = pipeline(FLOW)
    sent = message("x", kind="text", topic="lk.transcription", attributes={ATTRIBUTE_FINAL: "true"})
    out = of_type(flow.process(sent), ToBridge)
    assert out and out[0].message.event_id == sent.event_id
    assert flow.stats()["transcripts:transcripts"]["no_segment_id"] == 1
