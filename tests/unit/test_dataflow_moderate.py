"""`[[moderate]]`: a folded blocklist against adversarial Unicode; drop, mask, flag; reports; room actions."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from framepool.dataflow import PublishData, RoomServiceAction, ToBridge
from framepool.dataflow.moderate import FLAG_ATTRIBUTE
from framepool.dataflow.normalize import fold, fold_with_map
from tests.support.dataflow import message, of_type, pipeline, room

DROP = '[[moderate]]\nblocklist = ["darn", "heck off"]\n[[route]]\nto_bridges = ["sink"]'


def passes(text: str, toml: str = DROP) -> bool:
    return bool(of_type(pipeline(toml).process(message(text, kind="text", topic="lk.chat")), ToBridge))


@pytest.mark.parametrize(
    "text",
    [
        "darn",
        "DARN it",
        "oh Darn!",
        "ｄａｒｎ",  # fullwidth
        "d\u0301a\u0308r\u0303n",  # combining marks
        "da\u200brn",  # zero-width space
        "d\u200da\u200cr\u2060n",  # ZWJ, ZWNJ, word joiner
        "dar\u00adn",  # soft hyphen
        "\ufeffdarn\ufe0f",  # BOM, variation selector
        "dаrn",  # Cyrillic а
        "ⓓⓐⓡⓝ",  # circled letters
        "𝐝𝐚𝐫𝐧",  # mathematical bold
        "heck off",
        "HECK\u00a0\u00a0 OFF",  # no-break spaces, several
        "heck\n\toff now",
    ],
)
def test_blocklisted_words_are_caught_however_they_are_written(text: str) -> None:
    assert not passes(text)


@pytest.mark.parametrize("text", ["darning needles", "undarn", "heck", "off heck", "hello", "", "d a r n"])
def test_word_boundaries_hold(text: str) -> None:
    assert passes(text)


def test_mask_replaces_each_hit_in_the_original_text() -> None:
    flow = pipeline('[[moderate]]\nblocklist = ["darn"]\naction = "mask"\n[[route]]\nto_bridges = ["s"]')
    (out,) = of_type(flow.process(message("Oh ＤＡＲＮ, d\u200barn it! darning", kind="text")), ToBridge)
    assert out.message.payload.decode() == "Oh ****, **** it! darning"
    assert flow.stats()["moderate:data.moderate[0]"]["masked"] == 1


def test_mask_a_field_of_a_json_payload_keeps_the_rest() -> None:
    toml = '[[moderate]]\nblocklist = ["darn"]\naction = "mask"\nmask_char = "#"\nfield = "msg.body"\n'
    flow = pipeline(toml + '[[route]]\nto_bridges = ["s"]')
    (out,) = of_type(flow.process(message({"msg": {"body": "darn it", "darn": 1}, "n": 2})), ToBridge)
    assert msgspec.json.decode(out.message.payload) == {"msg": {"body": "#### it", "darn": 1}, "n": 2}
    not_text = flow.process(message({"msg": {"body": 5}}))
    assert of_type(not_text, ToBridge)  # nothing to check: passes
    assert flow.stats()["moderate:data.moderate[0]"]["not_text"] == 1


def test_flag_lets_the_message_through_marked_and_reports_it() -> None:
    toml = (
        '[[moderate]]\nname = "chat"\nblocklist = ["darn"]\naction = "flag"\nnotify_topic = "mod.alerts"\n'
        'notify_destinations = ["moderator"]\nnotify_bridges = ["audit"]\n[[route]]\nto_bridges = ["s"]'
    )
    intents = pipeline(toml).process(message("darn", kind="text", topic="lk.chat", sender="bob"))
    (report,) = of_type(intents, PublishData)
    assert report.topic == "mod.alerts" and report.destinations == ("moderator",)
    note = msgspec.json.decode(report.payload)
    assert note["sender"] == "bob" and note["terms"] == ["darn"] and note["action"] == "flag"
    audit, passed = of_type(intents, ToBridge)
    assert audit.sink == "audit" and passed.sink == "s"
    assert (
        passed.message.attributes[FLAG_ATTRIBUTE]
        == "moderate:chat"
        == audit.message.attributes[FLAG_ATTRIBUTE]
    )
    assert passed.message.payload == b"darn"


def test_a_room_action_after_n_hits_once_per_sender() -> None:
    toml = '[[moderate]]\nblocklist = ["darn"]\nroom_action = "revoke_publish_data"\nroom_action_after = 2'
    flow = pipeline(toml)
    assert not of_type(flow.process(message("darn", sender="bob")), RoomServiceAction)
    (action,) = of_type(flow.process(message("darn", sender="bob")), RoomServiceAction)
    assert action.kind == "revoke_publish_data" and action.identity == "bob"
    assert not of_type(flow.process(message("darn", sender="bob")), RoomServiceAction)
    remove = pipeline('[[moderate]]\nblocklist = ["darn"]\nroom_action = "remove_participant"')
    assert (
        of_type(remove.process(message("darn", sender="eve")), RoomServiceAction)[0].kind
        == "remove_participant"
    )
    assert not of_type(
        remove.process(message("darn", sender="")), RoomServiceAction
    )  # the server: nobody to act on


def test_the_strike_memory_is_bounded() -> None:
    flow = pipeline(
        '[[moderate]]\nblocklist = ["darn"]\nroom_action = "remove_participant"\nmax_tracked_senders = 3'
    )
    for n in range(10):
        flow.process(message("darn", sender=f"user{n}"))
    assert len(flow._moderate[0]._strikes) == 3
    assert flow.stats()["moderate:data.moderate[0]"]["senders_forgotten"] == 7


def test_oversize_texts_are_dropped_unread() -> None:
    flow = pipeline('[[moderate]]\nblocklist = ["darn"]\nmax_chars = 10\n[[route]]\nto_bridges = ["s"]')
    assert not flow.process(message("x" * 11))
    assert flow.stats()["moderate:data.moderate[0]"]["oversize"] == 1


def test_the_rebroadcast_pattern_only_passes_clean_messages_to_the_others() -> None:
    toml = (
        '[[moderate]]\nmatch = { topic = "chat.in" }\nblocklist = ["darn"]\n'
        '[[route]]\nmatch = { topic = "chat.in" }\n[[route.to_room]]\ntopic = "chat"'
    )
    flow = pipeline(toml, room("alice", "bob", "carol"))
    (clean,) = flow.process(message("hello", topic="chat.in", sender="alice"))
    assert isinstance(clean, PublishData) and clean.topic == "chat" and clean.destinations == ("bob", "carol")
    assert not flow.process(message("darn", topic="chat.in", sender="alice"))


SEPARATORS = st.sampled_from(["", "\u200b", "\u200d", "\u00ad", "\u0301", "\ufe0f"])


@given(st.lists(st.tuples(st.sampled_from("darnDARNｄａｒｎаd"), SEPARATORS), min_size=1, max_size=12))
def test_the_character_wise_fold_agrees_with_the_fast_one(pieces: list[tuple[str, str]]) -> None:
    text = "".join(letter + separator for letter, separator in pieces)
    folded, origin = fold_with_map(text)
    assert folded == fold(text)
    assert len(origin) == len(folded) and origin == sorted(origin)


@given(st.text(max_size=200))
def test_moderation_never_raises_and_mask_keeps_text_outside_hits(text: str) -> None:
    flow = pipeline(
        '[[moderate]]\nblocklist = ["darn", "heck off"]\naction = "mask"\n[[route]]\nto_bridges = ["s"]'
    )
    out = of_type(flow.process(message(text.encode("utf-8", "surrogatepass"), kind="text")), ToBridge)
    if "darn" not in fold(text) and "heck" not in fold(text):
        assert out and out[0].message.payload == text.encode("utf-8", "surrogatepass")
