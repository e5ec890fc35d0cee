"""The pipeline: the documented examples load and behave, stages chain in order, nothing a participant sends
makes it raise (hypothesis), a failing stage is contained and counted."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from framepool.dataflow import (
    ParticipantView,
    PublishData,
    SetAttributes,
    StaticRoom,
    ToBridge,
    load_dataflow,
)
from framepool.processors.messages import DATA_KINDS
from tests.support.dataflow import T0, Clock, message, of_type, pipeline, room

DOC = Path(__file__).resolve().parents[2] / "docs" / "dataflows-processors.md"


def doc_examples() -> list[dict[str, Any]]:
    """The `data` table of every TOML example in the docs."""
    tables = []
    for block in re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S):
        agents = tomllib.loads(block)["agents"]
        tables.append((agents[0] if isinstance(agents, list) else agents)["data"])
    return tables


def test_every_documented_example_loads() -> None:
    examples = doc_examples()
    assert len(examples) >= 7
    for index, data in enumerate(examples):
        load_dataflow(data, where=f"docs example {index}")


def test_the_documented_poll_tallies_last_votes_to_a_topic_and_an_attribute() -> None:
    (poll,) = [data for data in doc_examples() if data.get("aggregate", [{}])[0].get("name") == "poll"]
    clock = Clock()
    flow = load_dataflow(poll).pipeline(room("alice", "bob", "carol"), room_name="room", clock=clock)
    intents = []
    for sender, choice in [("alice", "A"), ("bob", "B"), ("carol", "B"), ("alice", "B")]:
        intents += flow.process(message({"choice": choice}, topic="vote", sender=sender))
    assert [i.sink for i in of_type(intents, ToBridge)] == ["webhook"] * 4  # every vote is kept
    ticked = flow.tick(T0 + 1)
    (tally,) = of_type(ticked, PublishData)
    assert tally.topic == "poll.tally" and msgspec.json.decode(tally.payload)["results"] == {"B": 3}
    assert of_type(ticked, SetAttributes)[0].attributes == {"poll": '{"B":3}'}


def test_moderation_runs_before_transforms_aggregates_and_routes() -> None:
    flow = pipeline(
        '[[moderate]]\nblocklist = ["darn"]\n'
        '[[transform]]\nexpression = "{said: payload.t}"\n'
        '[[aggregate]]\nname = "n"\nto_topic = "count"\n'
        '[[route]]\nto_bridges = ["s"]'
    )
    assert not flow.process(message({"t": "darn"}))
    (out,) = of_type(flow.process(message({"t": "fine"})), ToBridge)
    assert out.message.payload == b'{"said":"fine"}'
    assert msgspec.json.decode(of_type(flow.flush(T0 + 1), PublishData)[0].payload)["results"] == {"all": 1}
    assert flow.stats()["pipeline"] == {"received": 2, "dropped": 1}


class BrokenRoom(StaticRoom):
    """A RoomView adapter with a bug: listing participants raises."""

    def participants(self) -> Iterable[ParticipantView]:
        raise RuntimeError("adapter bug")


def test_a_failing_stage_drops_the_message_counts_and_never_raises(caplog: Any) -> None:
    flow = load_dataflow(
        tomllib.loads(
            '[[route]]\n[[route.to_room]]\ndestination_attribute = "lang"\ndestination_values = ["fr"]\n'
            '[[route]]\nto_bridges = ["s"]'
        )
    ).pipeline(BrokenRoom())
    for _ in range(3):
        assert [i.sink for i in of_type(flow.process(message(b"x")), ToBridge)] == [
            "s"
        ]  # the next route runs
    assert flow.stats()["pipeline"]["crashed"] == 3
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1  # logged once per stage


EVERYTHING = """
[[moderate]]
blocklist = ["darn"]
action = "mask"
field = "text"
[[moderate]]
match = { kind = ["text"] }
blocklist = ["heck"]
action = "flag"
notify_topic = "mod"
notify_destinations = ["m"]
room_action = "remove_participant"
[[transform]]
match = { topic = "j*" }
where = "payload.v != `null`"
expression = "{v: payload.v, k: payload.k, who: sender}"
[[aggregate]]
name = "sum"
key = "payload.k"
value = "payload.v"
function = "sum"
window = "hopping"
size_s = 2
hop_s = 1
to_topic = "sum"
attribute = "sum"
to_bridges = ["b"]
[[aggregate]]
name = "votes"
key = "payload.choice"
per_sender = true
window = "global"
emit = "every"
every_s = 0.1
to_topic = "votes"
[[transcripts]]
to_bridges = ["t"]
[[route]]
match = { attributes = { lang = ["fr", "de"] }, sender = "a*" }
to_processors = ["p"]
[[route]]
[[route.to_room]]
destination_attribute = "lang"
destination_value_from = "payload.lang"
[[route.to_room]]
topic = "copy.{sender}"
"""

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("vkchoicelangtext"), inner, max_size=4)
    ),
    max_leaves=12,
)
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    JSONISH.map(msgspec.json.encode),
    JSONISH.map(lambda v: msgspec.json.encode(v)[:-1]),  # truncated JSON
    st.text(max_size=100).map(str.encode),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            PAYLOADS,
            st.sampled_from(DATA_KINDS),
            st.text(max_size=12),
            st.text(max_size=8),
            st.dictionaries(
                st.sampled_from(["lang", "x", "lk.transcription_final", "lk.segment_id"]), st.text(max_size=6)
            ),
            st.floats(min_value=0, max_value=30),
        ),
        max_size=25,
    )
)
def test_nothing_a_participant_sends_makes_the_pipeline_raise(events: list[tuple[Any, ...]]) -> None:
    clock = Clock()
    view = room(("a1", {"lang": "fr"}), ("b2", {"lang": "de"}), "c3")
    flow = load_dataflow(tomllib.loads(EVERYTHING)).pipeline(view, room_name="room", clock=clock)
    for payload, kind, topic, sender, attributes, offset in events:
        clock.now = T0 + offset
        flow.process(
            message(payload, kind=kind, topic=topic, sender=sender, attributes=attributes, at=T0 + offset)
        )
        flow.tick()
    flow.flush(T0 + 100)
    stats = flow.stats()
    assert stats["pipeline"].get("received", 0) == len(events)
    assert "crashed" not in stats["pipeline"]
