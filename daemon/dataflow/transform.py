"""`[[data.transform]]`: filter and reshape JSON payloads with JMESPath (supervisor process).

A matching message whose payload is JSON is kept only when `where` holds, and its payload becomes the
compact JSON of `expression`'s result (null: dropped, counted `null_result`). A payload that is not JSON
passes untouched or is dropped (`non_json`). Transforms apply in file order, each to what the previous one
left; what they leave is what aggregates, transcripts and routes see.
"""

from __future__ import annotations

from collections import Counter

import msgspec

from framepool.dataflow.config import TransformConfig, config_error
from framepool.dataflow.envelope import Envelope, optional_expression, truthy
from framepool.dataflow.intents import RoomView
from framepool.dataflow.match import Matcher


class Transform:
    """A compiled `TransformConfig`."""

    def __init__(self, config: TransformConfig, where: str) -> None:
        self.name = "transform:" + (config.name or where)
        self.counters: Counter[str] = Counter()
        self.matcher = Matcher(config.match)
        self.where = optional_expression(config.where, where, "where")
        self.expression = optional_expression(config.expression, where, "expression")
        self.drop_non_json = config.non_json == "drop"
        if self.where is None and self.expression is None:
            raise config_error(where, "expression", "", "a where or an expression (or both)")

    def __call__(self, envelope: Envelope, room: RoomView) -> Envelope | None:
        """The envelope to go on with (the same, or a new one with the new payload), or None: dropped."""
        if not self.matcher(envelope.message, room):
            return envelope
        counters = self.counters
        counters["matched"] += 1
        if not envelope.is_json():
            counters["non_json"] += 1
            if self.drop_non_json:
                counters["dropped"] += 1
                return None
            return envelope
        if self.where is not None:
            keep, failed = self.where.search(envelope)
            if failed or not truthy(keep):
                counters["errors" if failed else "filtered"] += 1
                counters["dropped"] += 1
                return None
        if self.expression is None:
            return envelope
        result, failed = self.expression.search(envelope)
        if failed or result is None:
            counters["errors" if failed else "null_result"] += 1
            counters["dropped"] += 1
            return None
        counters["transformed"] += 1
        payload = msgspec.json.encode(result)
        return Envelope(msgspec.structs.replace(envelope.message, payload=payload))
