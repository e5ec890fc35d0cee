"""Events for the sink tests (test process, and the PostgreSQL runner child it starts): hypothesis
strategies over every `DataMessage` field, and deterministic room traffic whose event ids are the same in
every run (so a restarted child re-delivers the very events it could not confirm).
"""

from __future__ import annotations

import random
import typing
import uuid

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from framepool.processors.messages import DATA_KINDS, DataMessage, SenderKind

SENDER_KINDS: tuple[str, ...] = typing.get_args(SenderKind)
LARGE = 4 << 20  # a payload beyond what a data packet carries: a byte stream's


def fuzz(cases: int) -> settings:
    """`cases` examples, the same ones every run, no per-example deadline (real servers answer them)."""
    return settings(
        max_examples=cases,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# Text as the SDK hands it over (valid UTF-8: no lone surrogates); NUL excluded, which PostgreSQL refuses
# and the PostgreSQL tests send on purpose.
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
payloads = (
    st.binary(max_size=512)
    | st.sampled_from([b"", b"\x00", b"\xff\xfe\xfd", b"\xc3\x28", b"\xed\xa0\x80", b'{"a": 1'])
    | st.builds(lambda n, seed: random.Random(seed).randbytes(n), st.integers(0, LARGE), st.integers())
)


@st.composite
def messages(draw: st.DrawFn, text: st.SearchStrategy[str] = texts) -> DataMessage:
    """Any DataMessage the supervisor can make (received_us: up to ~2255, what a timestamptz holds)."""
    return DataMessage(
        event_id=str(draw(st.uuids())),
        seq=draw(st.integers(1, 2**63 - 1)),
        job=draw(text),
        room=draw(text),
        kind=draw(st.sampled_from(DATA_KINDS)),
        topic=draw(text),
        sender=draw(text),
        sender_kind=draw(st.sampled_from(SENDER_KINDS)),  # type: ignore[arg-type]
        received_us=draw(st.integers(0, 2**53)),
        reliable=draw(st.booleans()),
        attributes=draw(st.dictionaries(text, text, max_size=4)),
        payload=draw(payloads),
    )


def room_traffic(run: str, total: int, rooms: int = 3) -> list[DataMessage]:
    """`total` events over `rooms` rooms, interleaved, each room's `seq` from 1; event ids derived from
    `run` and the index, the same in every process."""
    base = uuid.uuid5(uuid.NAMESPACE_URL, f"framepool-test:{run}").int & ~((1 << 32) - 1)
    seqs = [0] * rooms
    events = []
    for i in range(total):
        room = i % rooms
        seqs[room] += 1
        events.append(
            DataMessage(
                event_id=str(uuid.UUID(int=base | i)),
                seq=seqs[room],
                job=f"job-{room}",
                room=f"room-{room}",
                kind="packet",
                topic="telemetry",
                sender=f"sensor-{i % 7}",
                sender_kind="standard",
                received_us=1_700_000_000_000_000 + i,
                payload=b"%d:" % i + bytes(range(256))[: i % 64],
            )
        )
    return events
