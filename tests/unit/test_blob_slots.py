"""Blob slots (`ctx.send_bytes`, framepool.ipc.blobs): a blob round-trips through a ring, and everything a
worker writes into one is checked before a sink sees it (a bad slot is a SlotError, the pool's protocol
violation); the dev server announces a publisher's stereo flag as the TF_STEREO audio feature."""

from __future__ import annotations

import os
from collections.abc import Iterator

import msgspec
import pytest

from framepool.ipc.blobs import (
    KIND_BLOB,
    MAX_ATTRIBUTES,
    BlobHeader,
    blob_slot,
    blob_slot_bytes,
    decode_blob,
)
from framepool.ipc.ring import POLICY_BLOCK, FrameRing
from framepool.ipc.slots import FMT_BYTES, KEY_BYTES, SlotError

KEY = 0x1234_5678_9ABC_DEF0
PROCESSORS = ["snapshot", "other"]
MAX = 64 * 1024


@pytest.fixture
def ring() -> Iterator[tuple[FrameRing, FrameRing]]:
    producer = FrameRing.create(2, blob_slot_bytes(MAX), POLICY_BLOCK)
    consumer = FrameRing.attach(os.dup(producer.fd))
    try:
        yield producer, consumer
    finally:
        producer.close()
        consumer.close()


def header(**changes: object) -> BlobHeader:
    fields: dict[str, object] = {"topic": "snapshot", "name": "frame-1.jpg", "mime_type": "image/jpeg"}
    fields["attributes"] = {"camera": "front"}
    fields.update(changes)
    return BlobHeader(**fields)  # type: ignore[arg-type]


def test_a_blob_round_trips_whole(ring: tuple[FrameRing, FrameRing]) -> None:
    producer, consumer = ring
    data = os.urandom(MAX)
    shape, payload = blob_slot(3, KEY, 0, header(), data)
    assert shape.write(producer, payload, 7, 1_000_000)
    item = consumer.peek()
    assert item is not None
    blob = decode_blob(item[0], item[1], "job/TR_1/0", PROCESSORS, KEY, MAX)
    assert blob.data == data and (blob.processor, blob.seq, blob.frame_time_us) == ("snapshot", 7, 1_000_000)
    assert (blob.topic, blob.name, blob.mime_type, blob.attributes) == (
        "snapshot", "frame-1.jpg", "image/jpeg", {"camera": "front"},
    )  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        header(name=""),
        header(topic="t" * 256),
        header(attributes={"k": "v" * 256}),
        header(attributes={f"k{i}": "v" for i in range(MAX_ATTRIBUTES + 1)}),
    ],
    ids=["no name", "long topic", "long attribute", "too many attributes"],
)
def test_the_worker_refuses_a_header_beyond_the_limits(bad: BlobHeader) -> None:
    with pytest.raises(ValueError, match="send_bytes with"):
        blob_slot(1, KEY, 0, bad, b"x")


class Descriptor:
    """A descriptor as a worker could write it, field by field."""

    def __init__(self, length: int, **fields: int) -> None:
        self.seq, self.ts_us, self.flags, self.length = 1, 0, 0, length
        self.kind, self.fmt, self.a, self.b, self.c = KIND_BLOB, FMT_BYTES, 1, 0, 0
        for name, value in fields.items():
            setattr(self, name, value)


def forged(data: bytes = b"jpeg", key: int = KEY, **fields: int) -> tuple[Descriptor, memoryview]:
    shape, payload = blob_slot(1, key, 0, header(), data)
    fields.setdefault("c", shape.header_bytes)
    length = fields.pop("length", len(payload))
    return Descriptor(length, **fields), memoryview(payload)


@pytest.mark.parametrize(
    ("slot", "why"),
    [
        (forged(key=KEY + 1), "without that stream's key"),
        (forged(b=2), "names processor 2"),
        (forged(kind=3), "not a blob"),
        (forged(c=1 << 20), "claims a header"),
        (forged(c=3), "does not decode"),
        (forged(data=b"x" * (MAX + 1)), "over bytes_max"),
        (forged(length=5), "claims a header"),
    ],
    ids=["key", "processor", "kind", "header length", "header bytes", "too large", "length"],
)
def test_a_malformed_blob_slot_is_a_slot_error(slot: tuple[Descriptor, memoryview], why: str) -> None:
    with pytest.raises(SlotError, match=why):
        decode_blob(slot[0], slot[1], "s", PROCESSORS, KEY, MAX)


def test_a_header_that_decodes_but_breaks_the_limits_is_refused() -> None:
    encoded = msgspec.msgpack.encode(["t", "", "image/jpeg", {}])  # an empty name, written by hand
    payload = KEY.to_bytes(KEY_BYTES, "little") + encoded + b"data"
    with pytest.raises(SlotError, match="empty name"):
        decode_blob(Descriptor(len(payload), c=len(encoded)), memoryview(payload), "s", PROCESSORS, KEY, MAX)
