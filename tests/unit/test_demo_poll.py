"""The demo's poll arithmetic and its webhook receiver's signature check, against the bridge's own signing
(test process)."""

from __future__ import annotations

from framepool.bridge.webhook import sign
from framepool.demo.poll import SECRET, expected_tally, verify


def test_the_expected_tally_counts_the_last_vote_of_each_voter() -> None:
    votes = (("alice", "A"), ("bob", "B"), ("bob", "A"), ("carol", "C"))
    assert expected_tally(votes) == {"A": 2, "C": 1}


def test_the_receiver_accepts_the_bridges_signature_and_nothing_else() -> None:
    body = b'{"event_id": "e1", "payload": "{\\"choice\\": \\"A\\"}"}'
    headers = {"webhook-id": "e1", "webhook-timestamp": "1718000000"}
    good = {**headers, "webhook-signature": sign(SECRET, "e1", 1718000000, body)}
    assert verify(SECRET, good, body)
    assert not verify(SECRET, good, body + b" ")
    assert not verify(SECRET, {**good, "webhook-id": "e2"}, body)
    assert not verify(SECRET, headers, body)
    assert not verify("whsec_" + "b3RoZXI=", good, body)
