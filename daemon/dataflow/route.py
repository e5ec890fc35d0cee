"""`[[data.route]]`: where a message goes (supervisor process).

A route that matches sends the message to data processors (worker pool), to bridges, and/or back into the
room: the topic rewritten by a template, to fixed identities, or to the participants whose attribute (e.g.
`lang`) equals a fixed value or a value taken from the message. Every matching route fires; a message no
route matches goes nowhere (counted by the pipeline as `unrouted`).

An attribute-chosen fan-out that finds nobody emits nothing: a publish with no destinations would reach
everyone. The sender is left out of room outputs unless `include_sender` (LiveKit never echoes a packet to
its sender either), so when leaving it out empties an explicit list, nothing is sent.
"""

from __future__ import annotations

from collections import Counter

from framepool.dataflow.config import RoomOutputConfig, RouteConfig, config_error
from framepool.dataflow.envelope import Envelope, Template, as_key, optional_expression
from framepool.dataflow.intents import Intent, PublishData, RoomView, SendText, ToBridge, ToProcessors
from framepool.dataflow.match import Matcher


class RoomOutput:
    """One compiled `to_room` entry."""

    def __init__(self, config: RoomOutputConfig, where: str) -> None:
        self.config = config
        self.topic = Template(config.topic, where, "topic")
        self.value_from = optional_expression(config.destination_value_from, where, "destination_value_from")
        self.values = frozenset(config.destination_values)
        attribute_routed = bool(self.values or self.value_from)
        if attribute_routed != bool(config.destination_attribute):
            raise config_error(
                where,
                "destination_attribute",
                config.destination_attribute,
                "destination_attribute together with destination_values or destination_value_from",
            )
        if self.values and self.value_from:
            raise config_error(
                where,
                "destination_value_from",
                config.destination_value_from,
                "not both it and destination_values",
            )
        if attribute_routed and config.destinations:
            raise config_error(
                where, "destinations", config.destinations, "not both it and destination_attribute"
            )

    def intent(self, envelope: Envelope, room: RoomView, stage: str, counters: Counter[str]) -> Intent | None:
        message = envelope.message
        destinations = self._destinations(envelope, room, counters)
        if destinations is None:
            return None
        topic = self.topic.render(message)
        as_text = self.config.send_as == "text" or (self.config.send_as == "auto" and message.kind == "text")
        counters["sent_to_room"] += 1
        if as_text:
            return SendText(topic=topic, text=message.text(), destinations=destinations, stage=stage)
        return PublishData(
            topic=topic,
            payload=message.payload,
            reliable=self.config.reliable,
            destinations=destinations,
            stage=stage,
        )

    def _destinations(
        self, envelope: Envelope, room: RoomView, counters: Counter[str]
    ) -> tuple[str, ...] | None:
        """The identities to send to; () for everyone; None for nobody (counted)."""
        sender = envelope.message.sender
        config = self.config
        if config.destination_attribute:
            wanted = self._wanted_values(envelope, counters)
            chosen = tuple(
                p.identity
                for p in room.participants()
                if p.attributes.get(config.destination_attribute) in wanted
                and (config.include_sender or p.identity != sender)
            )
        elif config.destinations:
            chosen = tuple(i for i in config.destinations if config.include_sender or i != sender)
        elif config.include_sender or not sender:
            return ()
        else:
            chosen = tuple(p.identity for p in room.participants() if p.identity != sender)
        if not chosen:
            counters["no_listeners"] += 1
            return None
        return chosen

    def _wanted_values(self, envelope: Envelope, counters: Counter[str]) -> frozenset[str]:
        if self.value_from is None:
            return self.values
        value, failed = self.value_from.search(envelope)
        counters["errors"] += failed
        return frozenset() if value is None else frozenset([as_key(value)])


class Route:
    """A compiled `RouteConfig`."""

    def __init__(self, config: RouteConfig, where: str) -> None:
        self.name = "route:" + (config.name or where)
        self.counters: Counter[str] = Counter()
        self.matcher = Matcher(config.match)
        self.processors = tuple(config.to_processors)
        self.bridges = tuple(config.to_bridges)
        self.outputs = [RoomOutput(out, f"{where}.to_room[{i}]") for i, out in enumerate(config.to_room)]
        if not (self.processors or self.bridges or self.outputs):
            raise config_error(where, "to_room", [], "at least one of to_processors, to_bridges, to_room")

    def __call__(self, envelope: Envelope, room: RoomView, out: list[Intent]) -> bool:
        """Append this route's intents for a message; whether it matched."""
        message = envelope.message
        if not self.matcher(message, room):
            return False
        self.counters["matched"] += 1
        if self.processors:
            out.append(ToProcessors(processors=self.processors, message=message, stage=self.name))
        out.extend(ToBridge(sink=sink, message=message, stage=self.name) for sink in self.bridges)
        for output in self.outputs:
            intent = output.intent(envelope, room, self.name, self.counters)
            if intent is not None:
                out.append(intent)
        return True
