"""The bridge's pure parts (test process): the Standard Webhooks signature against the specification's
published vector, the JSON form of an event, sink config validation, the retry backoff."""

from __future__ import annotations

import pytest

from framepool.bridge.jsonform import event_from_json, event_to_json
from framepool.bridge.registry import SinkSpec, check, sink_config
from framepool.bridge.runner import DeliveryOptions, backoff
from framepool.bridge.webhook import WebhookConfig, retry_after, sign
from framepool.errors import ConfigError
from framepool.processors.messages import DataMessage, new_event_id
from tests.support.webhook import verify


def test_the_signature_matches_the_standard_webhooks_test_vector() -> None:
    signature = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                     b'{"test": 2432232314}')  # fmt: skip
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330"}
    assert verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", {**headers, "webhook-signature": signature},
                  b'{"test": 2432232314}')  # fmt: skip
    assert not verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", {**headers, "webhook-signature": signature},
                      b'{"test": 2432232315}')  # fmt: skip


@pytest.mark.parametrize("payload", [b'{"a": 1}', "héllo".encode(), b"\xff\xfe\x00", b""])
def test_the_json_form_keeps_every_field_and_payload(payload: bytes) -> None:
    event = DataMessage(
        event_id=new_event_id(), seq=3, job="J", room="r", kind="bytes", topic="t", sender="s",
        sender_kind="sip", received_us=5, reliable=False, attributes={"k": "v"}, payload=payload,
    )  # fmt: skip
    data = event_to_json(event)
    assert ("payload" in data) != ("payload_base64" in data)
    assert event_from_json(data) == event


def test_sink_configs_are_validated_with_the_path_of_the_bad_value() -> None:
    good = SinkSpec(name="hook", type="webhook", options={"url": "https://example.com/x"})
    assert isinstance(sink_config(good), WebhookConfig)
    with pytest.raises(ConfigError, match=r"sinks\[1\]\.options\.url"):
        check([good, SinkSpec(name="other", type="webhook", options={"url": 5})])
    with pytest.raises(ConfigError, match="used twice"):
        check([good, good])
    with pytest.raises(ConfigError, match="expected one of webhook, redis, postgres or module:Class"):
        check([SinkSpec(name="x", type="kafka")])
    with pytest.raises(ConfigError, match="cannot import"):
        check([SinkSpec(name="x", type="no.such.module:Sink")])
    check([SinkSpec(name="x", type="tests.support.jsonl_sink:JsonLinesSink", options={"path": "/tmp/x"})])


def test_backoff_grows_is_jittered_capped_and_honours_retry_after() -> None:
    options = DeliveryOptions(retry_initial=0.5, retry_max=8.0)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 8.0)]:
        delays = {backoff(attempt, options, None) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays) and len(delays) > 1
    assert backoff(0, options, 12.0) == 12.0
    assert backoff(0, options, 1e6) == 300.0
    assert retry_after("7") == 7.0 and retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
