"""`[[route]]`: matching (kind, topic and sender globs, participant kind, attribute predicates) and actions
(processors, bridges, room outputs with topic rewrite and destinations fixed or chosen by attribute)."""

from __future__ import annotations

import pytest

from framepool.dataflow import PublishData, SendText, ToBridge, ToProcessors
from tests.support.dataflow import message, of_type, pipeline, room

TO_BRIDGE = '\nto_bridges = ["sink"]'


@pytest.mark.parametrize(
    ("match", "kwargs", "taken"),
    [
        ('kind = ["text", "packet"]', {"kind": "packet"}, True),
        ('kind = ["text"]', {"kind": "packet"}, False),
        ('topic = "sensors.*"', {"topic": "sensors.temp"}, True),
        ('topic = "sensors.*"', {"topic": "sensor.temp"}, False),
        ('topic = "chat.[ab]"', {"topic": "chat.b"}, True),
        ('sender = "user-*"', {"sender": "user-42"}, True),
        ('sender = "user-*"', {"sender": "bot-1"}, False),
        ('sender = "user-*"', {"sender": "USER-1"}, False),  # identities are case-sensitive
        ('sender_kind = ["sip"]', {"sender_kind": "sip"}, True),
        ('sender_kind = ["sip"]', {"sender_kind": "standard"}, False),
        ('attributes = { lang = "fr" }', {"attributes": {"lang": "fr"}}, True),
        ('attributes = { lang = "fr" }', {"attributes": {"lang": "de"}}, False),
        ('attributes = { lang = "fr" }', {}, False),
        ('attributes = { lang = ["fr", "de"] }', {"attributes": {"lang": "de"}}, True),
        ('attributes = { lang = ["fr", "de"] }', {"attributes": {"lang": "en"}}, False),
        ('has_attributes = ["lang"]', {"attributes": {"lang": ""}}, True),
        ('has_attributes = ["lang"]', {"attributes": {"other": "x"}}, False),
        ('kind = ["dtmf"]\nsender_kind = ["sip"]', {"kind": "dtmf", "sender_kind": "sip"}, True),
    ],
)
def test_a_route_takes_only_what_its_match_says(match: str, kwargs: dict[str, object], taken: bool) -> None:
    flow = pipeline(f"[[route]]\nmatch = {{ {match.replace(chr(10), ', ')} }}{TO_BRIDGE}")
    intents = flow.process(message(b"x", **kwargs))  # type: ignore[arg-type]
    assert bool(of_type(intents, ToBridge)) is taken
    assert flow.stats()["pipeline"].get("unrouted", 0) == (0 if taken else 1)


def test_sender_attributes_are_read_from_the_room() -> None:
    view = room(("alice", {"role": "host"}), ("bob", {"role": "guest"}))
    flow = pipeline('[[route]]\nmatch = { sender_attributes = { role = "host" } }' + TO_BRIDGE, view)
    assert of_type(flow.process(message(b"x", sender="alice")), ToBridge)
    assert not of_type(flow.process(message(b"x", sender="bob")), ToBridge)
    assert not of_type(flow.process(message(b"x", sender="gone")), ToBridge)  # not in the room


def test_a_route_sends_to_processors_and_every_bridge_the_same_message() -> None:
    flow = pipeline('[[route]]\nto_processors = ["votes", "log"]\nto_bridges = ["pg", "hook"]')
    sent = message({"v": 1})
    intents = flow.process(sent)
    (processors,) = of_type(intents, ToProcessors)
    assert processors.processors == ("votes", "log") and processors.message == sent
    assert [(i.sink, i.message) for i in of_type(intents, ToBridge)] == [("pg", sent), ("hook", sent)]
    assert flow.stats()["route:data.route[0]"]["matched"] == 1


def test_every_matching_route_fires() -> None:
    flow = pipeline(
        '[[route]]\nto_bridges = ["a"]\n[[route]]\nname = "b"\nmatch = { topic = "t" }\nto_bridges = ["b"]'
    )
    assert [i.sink for i in of_type(flow.process(message(b"x")), ToBridge)] == ["a", "b"]


def test_room_output_rewrites_the_topic_and_broadcasts_to_all_but_the_sender() -> None:
    view = room("alice", "bob", "carol")
    flow = pipeline(
        '[[route]]\n[[route.to_room]]\ntopic = "relay.{room}.{topic}.{sender}.{kind}"\nreliable = false', view
    )
    (publish,) = of_type(flow.process(message(b"payload", topic="chat")), PublishData)
    assert publish.topic == "relay.room.chat.alice.packet"
    assert publish.payload == b"payload" and publish.reliable is False
    assert publish.destinations == ("bob", "carol")  # never empty: that would mean everyone, alice included


def test_include_sender_broadcasts_to_everyone() -> None:
    flow = pipeline("[[route]]\n[[route.to_room]]\ninclude_sender = true", room("alice", "bob"))
    (publish,) = of_type(flow.process(message(b"x")), PublishData)
    assert publish.destinations == ()


def test_a_broadcast_with_nobody_else_in_the_room_sends_nothing_and_counts() -> None:
    flow = pipeline("[[route]]\n[[route.to_room]]", room("alice"))
    assert not flow.process(message(b"x"))
    assert flow.stats()["route:data.route[0]"]["no_listeners"] == 1


def test_fixed_destinations_leave_out_the_sender() -> None:
    flow = pipeline('[[route]]\n[[route.to_room]]\ndestinations = ["mod", "alice"]')
    (publish,) = of_type(flow.process(message(b"x")), PublishData)
    assert publish.destinations == ("mod",)
    assert of_type(flow.process(message(b"x", sender="mod")), PublishData)[0].destinations == ("alice",)
    only_self = pipeline('[[route]]\n[[route.to_room]]\ndestinations = ["alice"]')
    assert not only_self.process(message(b"x"))
    assert only_self.stats()["route:data.route[0]"]["no_listeners"] == 1


def test_text_streams_go_out_as_text_and_packets_as_data_unless_told() -> None:
    flow = pipeline(
        '[[route]]\n[[route.to_room]]\ntopic = "out"\n[[route.to_room]]\ntopic = "raw"\nsend_as = "data"',
        room("alice", "bob"),
    )
    text, data = flow.process(message("héllo", kind="text"))
    assert isinstance(text, SendText) and text.text == "héllo" and text.topic == "out"
    assert isinstance(data, PublishData) and data.payload == "héllo".encode() and data.topic == "raw"
    forced = pipeline('[[route]]\n[[route.to_room]]\nsend_as = "text"', room("alice", "bob"))
    assert isinstance(forced.process(message(b"abc"))[0], SendText)


LISTENERS = room(("alice", {"lang": "en"}), ("bob", {"lang": "fr"}), ("carol", {"lang": "fr"}), ("dave", {}))


def test_destinations_chosen_by_a_fixed_attribute_value() -> None:
    flow = pipeline(
        '[[route]]\n[[route.to_room]]\ntopic = "captions.fr"\ndestination_attribute = "lang"\n'
        'destination_values = ["fr"]',
        LISTENERS,
    )
    (publish,) = of_type(flow.process(message(b"bonjour", sender="agent-x")), PublishData)
    assert publish.destinations == ("bob", "carol")


def test_destinations_chosen_by_a_value_taken_from_the_message() -> None:
    flow = pipeline(
        '[[route]]\nmatch = { topic = "captions" }\n[[route.to_room]]\ndestination_attribute = "lang"\n'
        'destination_value_from = "payload.lang"',
        LISTENERS,
    )
    (fr,) = of_type(
        flow.process(message({"lang": "fr", "text": "salut"}, topic="captions", sender="tx")), PublishData
    )
    assert fr.destinations == ("bob", "carol")
    (en,) = of_type(flow.process(message({"lang": "en"}, topic="captions", sender="tx")), PublishData)
    assert en.destinations == ("alice",)
    assert not flow.process(message({"lang": "jp"}, topic="captions", sender="tx"))  # nobody: nothing sent
    assert not flow.process(message(b"not json", topic="captions", sender="tx"))
    assert flow.stats()["route:data.route[0]"]["no_listeners"] == 2


def test_an_attribute_fan_out_follows_the_room_as_it_changes() -> None:
    view = room(("bob", {"lang": "fr"}))
    flow = pipeline(
        '[[route]]\n[[route.to_room]]\ndestination_attribute = "lang"\ndestination_values = ["fr"]', view
    )
    assert of_type(flow.process(message(b"x")), PublishData)[0].destinations == ("bob",)
    view.leave("bob")
    assert not flow.process(message(b"x"))
