"""`[[transform]]`: JMESPath filters and reshapes over the message envelope; non-JSON passes or drops."""

from __future__ import annotations

import msgspec

from framepool.dataflow import PublishData, ToBridge
from tests.support.dataflow import message, of_type, pipeline

ROUTE = '\n[[route]]\nto_bridges = ["sink"]'


def bridged(flow_toml: str, payload: object, **kwargs: object) -> list[ToBridge]:
    flow = pipeline(flow_toml + ROUTE)
    return of_type(flow.process(message(payload, **kwargs)), ToBridge)  # type: ignore[arg-type]


def test_an_expression_reshapes_the_payload_and_can_use_the_envelope() -> None:
    toml = '[[transform]]\nexpression = "{who: sender, celsius: payload.temp, unit: attributes.unit}"'
    (out,) = bridged(toml, {"temp": 21.5, "noise": [1, 2]}, sender="sensor-1", attributes={"unit": "C"})
    assert msgspec.json.decode(out.message.payload) == {"who": "sensor-1", "celsius": 21.5, "unit": "C"}
    assert out.message.topic == "t" and out.message.sender == "sensor-1"  # the rest of the message is kept


def test_where_filters() -> None:
    toml = '[[transform]]\nwhere = "payload.temp > `30`"'
    assert bridged(toml, {"temp": 31})
    assert not bridged(toml, {"temp": 29})
    assert not bridged(toml, {"other": 1})  # null > 30 is null: false
    flow = pipeline(toml + ROUTE)
    flow.process(message({"temp": 1}))
    assert flow.stats()["transform:data.transform[0]"] == {"matched": 1, "filtered": 1, "dropped": 1}


def test_a_null_result_drops_and_counts() -> None:
    flow = pipeline('[[transform]]\nexpression = "payload.missing"' + ROUTE)
    assert not of_type(flow.process(message({"a": 1})), ToBridge)
    assert flow.stats()["transform:data.transform[0]"]["null_result"] == 1


def test_an_unknown_function_is_a_runtime_error_counted_per_message() -> None:
    flow = pipeline(
        '[[transform]]\nexpression = "multiply(payload.t, `2`)"' + ROUTE
    )  # JMESPath has no multiply
    assert not flow.process(message({"t": 2}))
    assert flow.stats()["transform:data.transform[0]"]["errors"] == 1


def test_a_runtime_error_drops_and_counts() -> None:
    flow = pipeline('[[transform]]\nexpression = "sum(payload)"' + ROUTE)
    assert not flow.process(message(["a", "b"]))
    assert flow.stats()["transform:data.transform[0]"]["errors"] == 1
    assert of_type(flow.process(message([1, 2])), ToBridge)[0].message.payload == b"3"


def test_non_json_passes_untouched_by_default_or_drops_when_told() -> None:
    (out,) = bridged('[[transform]]\nexpression = "payload.a"', b"\xff not json")
    assert out.message.payload == b"\xff not json"
    assert not bridged('[[transform]]\nexpression = "payload.a"\nnon_json = "drop"', b"plain text")


def test_transforms_chain_in_file_order_and_only_on_their_match() -> None:
    toml = (
        '[[transform]]\nmatch = { topic = "sensors" }\nexpression = "{t: payload.temp}"\n'
        '[[transform]]\nexpression = "{t: payload.t, hot: payload.t > `30`}"'
    )
    (out,) = bridged(toml, {"temp": 35}, topic="sensors")
    assert msgspec.json.decode(out.message.payload) == {"t": 35, "hot": True}
    (other,) = bridged(toml, {"t": 1}, topic="else")  # only the second applies
    assert msgspec.json.decode(other.message.payload) == {"t": 1, "hot": False}


def test_routes_rebroadcast_the_transformed_payload() -> None:
    flow = pipeline(
        '[[transform]]\nexpression = "payload.text"\n[[route]]\n[[route.to_room]]\ninclude_sender = true'
    )
    (publish,) = of_type(flow.process(message({"text": "hi", "secret": 1})), PublishData)
    assert publish.payload == b'"hi"'
