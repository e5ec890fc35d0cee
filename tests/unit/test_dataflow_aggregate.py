"""`[[aggregate]]` with an injected clock: tumbling and hopping windows, late events, every-N-s snapshots,
the attribute rate limit, per-sender votes, every function, bounded state."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from framepool.dataflow import Intent, PublishData, SetAttributes, ToBridge
from tests.support.dataflow import T0, Clock, message, of_type, pipeline


def published(intents: list[Intent]) -> list[dict[str, Any]]:
    return [msgspec.json.decode(i.payload) for i in of_type(intents, PublishData)]


def test_tumbling_windows_emit_on_close_driven_by_ticks() -> None:
    clock = Clock()
    flow = pipeline('[[aggregate]]\nname = "n"\nsize_s = 10\nto_topic = "counts"', clock=clock)
    for offset in (0.0, 3.0, 9.9):
        clock.now = T0 + offset
        assert not flow.process(message({"x": 1}, at=T0 + offset))
    assert not flow.tick(T0 + 9.99)
    (result,) = published(flow.tick(T0 + 10.0))
    assert result == {
        "aggregate": "n",
        "window": {"start": T0, "end": T0 + 10},
        "final": True,
        "results": {"all": 3},
    }
    assert not flow.tick(T0 + 30)  # empty windows emit nothing


def test_an_event_in_the_next_window_closes_the_previous_one() -> None:
    clock = Clock()
    flow = pipeline('[[aggregate]]\nname = "n"\nsize_s = 10\nto_topic = "counts"', clock=clock)
    flow.process(message({}, at=T0 + 1))
    clock.now = T0 + 12
    (result,) = published(flow.process(message({}, at=T0 + 12)))
    assert result["results"] == {"all": 1} and result["window"]["start"] == T0


@pytest.mark.parametrize(
    ("function", "values", "expected"),
    [
        ("count", [5, 1, 7], 3),
        ("sum", [5, 1, 7.5], 13.5),
        ("mean", [5, 1, 6], 4.0),
        ("min", [5, 1, 7], 1),
        ("max", [5, 1, 7], 7),
        ("last", [5, 1, 7], 7),
        ("distinct", [5, 1, 5, "5"], 3),  # 5 and "5" differ
    ],
)
def test_each_function_per_key(function: str, values: list[Any], expected: Any) -> None:
    flow = pipeline(
        f'[[aggregate]]\nname = "n"\nkey = "payload.room"\nvalue = "payload.v"\nfunction = "{function}"\n'
        'to_topic = "out"'
    )
    for v in values:
        flow.process(message({"room": "a", "v": v}))
        flow.process(message({"room": "b", "v": 0}))
    (result,) = published(flow.flush(T0 + 1))
    assert result["results"]["a"] == expected
    assert set(result["results"]) == {"a", "b"}


def test_bad_values_and_missing_keys_are_counted_and_skipped() -> None:
    flow = pipeline(
        '[[aggregate]]\nname = "n"\nkey = "payload.k"\nvalue = "payload.v"\nfunction = "sum"\nto_topic = "o"'
    )
    flow.process(message({"k": "a", "v": "12"}))  # a string is not a number
    flow.process(message({"k": "a", "v": True}))  # nor is a boolean
    flow.process(message({"v": 1}))  # no key
    flow.process(message(b"not json"))
    flow.process(message({"k": "a", "v": 2}))
    (result,) = published(flow.flush(T0 + 1))
    assert result["results"] == {"a": 2}
    counters = flow.stats()["aggregate:n"]
    assert counters["bad_value"] == 2 and counters["no_key"] == 2 and counters["accepted"] == 1


def test_hopping_windows_count_an_event_in_each_window_it_falls_in() -> None:
    clock = Clock()
    flow = pipeline(
        '[[aggregate]]\nname = "h"\nwindow = "hopping"\nsize_s = 10\nhop_s = 5\nto_topic = "o"', clock=clock
    )
    closed = published(flow.process(message({}, at=T0 + 7)))  # windows [0,10) and [5,15)
    assert not closed
    closed += published(flow.process(message({}, at=T0 + 12)))  # [5,15) and [10,20); its time closes [0,10)
    assert len(closed) == 1
    closed += published(flow.tick(T0 + 15)) + published(flow.tick(T0 + 20))
    assert [(r["window"]["start"] - T0, r["results"]["all"]) for r in closed] == [(0, 1), (5, 2), (10, 1)]


def test_late_events_are_counted_and_dropped_or_join_the_windows_still_open() -> None:
    clock = Clock()
    flow = pipeline('[[aggregate]]\nname = "n"\nsize_s = 10\nlateness_s = 2\nto_topic = "o"', clock=clock)
    flow.process(message({}, at=T0 + 5))
    assert not flow.tick(T0 + 11)  # past the end, within the lateness
    flow.process(message({}, at=T0 + 9))  # late by wall clock, still accepted
    (result,) = published(flow.tick(T0 + 12))
    assert result["results"] == {"all": 2}
    flow.process(message({}, at=T0 + 8))  # its window has closed
    assert flow.stats()["aggregate:n"]["late"] == 1
    hopping = pipeline(
        '[[aggregate]]\nname = "h"\nwindow = "hopping"\nsize_s = 10\nhop_s = 5\nto_topic = "o"'
    )
    hopping.tick(T0 + 10)  # [0,10) closed; [5,15) open
    hopping.process(message({}, at=T0 + 7))
    (partial,) = published(hopping.tick(T0 + 15))
    assert partial["window"]["start"] == T0 + 5 and partial["results"] == {"all": 1}
    assert hopping.stats()["aggregate:h"]["late"] == 1


def test_every_n_seconds_snapshots_only_when_changed() -> None:
    clock = Clock()
    flow = pipeline(
        '[[aggregate]]\nname = "n"\nsize_s = 60\nemit = "every"\nevery_s = 1\nto_topic = "o"', clock=clock
    )
    flow.process(message({}, at=T0 + 0.1))
    (snap,) = published(flow.tick(T0 + 1))
    assert snap["final"] is False and snap["results"] == {"all": 1}
    assert not flow.tick(T0 + 1.5)  # not yet 1 s
    assert not flow.tick(T0 + 2.5)  # nothing changed
    flow.process(message({}, at=T0 + 3))
    (snap,) = published(flow.tick(T0 + 3.6))
    assert snap["results"] == {"all": 2}
    (final,) = published(flow.tick(T0 + 60))
    assert final["final"] is True and final["results"] == {"all": 2}


def test_a_poll_counts_each_senders_last_vote_and_rate_limits_the_attribute() -> None:
    clock = Clock()
    flow = pipeline(
        '[[aggregate]]\nname = "poll"\nmatch = { topic = "vote" }\nkey = "payload.choice"\n'
        "per_sender = true\n"
        'window = "global"\nemit = "every"\nevery_s = 0.5\nto_topic = "poll.tally"\nattribute = "poll"\n'
        "attribute_min_interval_s = 2",
        clock=clock,
    )
    votes = [("alice", "A"), ("bob", "B"), ("carol", "A"), ("alice", "B"), ("alice", "B")]
    for sender, choice in votes:
        flow.process(message({"choice": choice}, topic="vote", sender=sender))
    intents = flow.tick(T0 + 1)
    assert published(intents)[0]["results"] == {"B": 2, "A": 1}  # alice moved from A to B
    assert published(intents)[0]["window"] is None
    assert of_type(intents, SetAttributes)[0].attributes == {"poll": '{"B":2,"A":1}'}
    flow.process(message({"choice": "A"}, topic="vote", sender="dave"))
    intents = flow.tick(T0 + 2)
    assert published(intents)[0]["results"] == {"B": 2, "A": 2}
    assert not of_type(intents, SetAttributes)  # 1 s after the last update: waits
    flow.process(message({"choice": "C"}, topic="vote", sender="erin"))
    intents = flow.tick(T0 + 2.5)  # a newer tally replaces the waiting one
    assert not of_type(intents, SetAttributes)
    (update,) = of_type(flow.tick(T0 + 3), SetAttributes)  # 2 s after the last: the newest value goes out
    assert update.attributes == {"poll": '{"B":2,"A":2,"C":1}'}
    counters = flow.stats()["aggregate:poll"]
    assert counters["attribute_updates"] == 2 and counters["attribute_coalesced"] == 1


def test_results_to_a_bridge_are_messages_in_the_jobs_order() -> None:
    flow = pipeline('[[aggregate]]\nname = "n"\nto_bridges = ["pg"]')
    flow.process(message({}))
    (out,) = of_type(flow.flush(T0 + 5), ToBridge)
    assert out.sink == "pg" and out.message.topic == "aggregate:n" and out.message.kind == "packet"
    assert out.message.room == "room" and out.message.job == "AJ_test" and out.message.seq == 1
    assert msgspec.json.decode(out.message.payload)["results"] == {"all": 1}


def test_state_is_bounded_and_refusals_are_counted() -> None:
    flow = pipeline('[[aggregate]]\nname = "n"\nkey = "payload.k"\nmax_keys = 3\nto_topic = "o"')
    for k in range(10):
        flow.process(message({"k": k}))
    (result,) = published(flow.flush(T0 + 1))
    assert list(result["results"]) == ["0", "1", "2"]
    assert flow.stats()["aggregate:n"]["keys_refused"] == 7
    votes = pipeline(
        '[[aggregate]]\nname = "v"\nkey = "payload.c"\nper_sender = true\nmax_senders = 2\nto_topic = "o"'
    )
    for sender in ("a", "b", "c", "d"):
        votes.process(message({"c": "x"}, sender=sender))
    assert published(votes.flush(T0 + 1))[0]["results"] == {"x": 2}
    assert votes.stats()["aggregate:v"]["senders_refused"] == 2
    distinct = pipeline(
        '[[aggregate]]\nname = "d"\nvalue = "payload"\nfunction = "distinct"\nmax_distinct = 4\n'
        'to_topic = "o"'
    )
    for v in range(10):
        distinct.process(message(v))
    assert published(distinct.flush(T0 + 1))[0]["results"] == {"all": 4}
    assert distinct.stats()["aggregate:d"]["distinct_capped"] == 6


def test_open_windows_stay_bounded_over_a_long_run() -> None:
    clock = Clock()
    flow = pipeline(
        '[[aggregate]]\nname = "h"\nwindow = "hopping"\nsize_s = 10\nhop_s = 1\nto_topic = "o"', clock=clock
    )
    aggregate = flow._aggregate[0]
    for second in range(1000):
        clock.now = T0 + second
        flow.process(message({}, at=T0 + second))
        assert len(aggregate._windows) <= 10
    assert flow.stats()["aggregate:h"]["windows_closed"] >= 990
