"""What a blob slot means: `ctx.send_bytes` from a worker to the supervisor (both processes).

A blob (a JPEG for a vision model) is too large for a result slot and for a LiveKit data packet: it leaves
the room as a byte stream, or offline as a file. It travels on the worker's one *blob ring*, beside the
result ring, one whole blob per slot (`blob_slot_bytes(bytes_max)`), in the descriptor words that
`framepool.ipc.slots` lists as kind 5:

    kind        fmt        a              b                c                   payload
    5 blob      5 bytes    stream index   processor index  header length       key, msgpack BlobHeader, data

Like a result slot, a blob slot starts with its stream's key (8 bytes, see Validation in
`framepool.ipc.slots`): the ring is shared by every stream of the worker, so the index alone cannot say
whose blob it is. The header (topic, name, MIME type, attributes) is msgpack, bounded by
`MAX_HEADER_BYTES`, each string by `MAX_FIELD_BYTES`; the data is the rest of the slot. `decode_blob`
checks all of it and raises `SlotError`, which the pool treats as the worker breaking the protocol.

Why a ring of its own rather than blob chunks in the result ring: a blob split over several slots of a
realtime ring that fills half-way through would arrive torn (or the producer would need a multi-slot
reservation), and the supervisor would hold reassembly state per stream. One slot per blob keeps the
slot's validation whole, at the price of `bytes_ring_slots` x `bytes_max` of pre-faulted shared memory per
worker (8 MiB with the defaults); `bytes_ring_slots = 0` creates no ring and makes `send_bytes` raise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from framepool.ipc.slots import FMT_BYTES, KEY_BYTES, Descriptor, Ring, SlotError

KIND_BLOB: Final = 5
MAX_FIELD_BYTES: Final = 255  # topic (as a result's), name, MIME type, each attribute key and value
MAX_ATTRIBUTES: Final = 32
MAX_HEADER_BYTES: Final = 4 + 3 * (MAX_FIELD_BYTES + 3) + 4 + MAX_ATTRIBUTES * 2 * (MAX_FIELD_BYTES + 3)


class BlobHeader(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What a blob slot says about its data (the processor's `send_bytes` arguments)."""

    topic: str
    name: str
    mime_type: str
    attributes: dict[str, str]


class Blob(msgspec.Struct, frozen=True, kw_only=True):
    """One `ctx.send_bytes()`, as a sink receives it."""

    stream_id: str
    processor: str
    topic: str
    name: str
    mime_type: str
    attributes: dict[str, str]
    frame_time_us: int  # of the frame its processor was handling (see Clock in framepool.ipc.slots)
    seq: int  # per processor and stream, from 1
    data: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(BlobHeader)


def blob_slot_bytes(max_data: int) -> int:
    """The slot size of a blob ring whose blobs may be `max_data` bytes (key and header travel in the
    slot)."""
    return KEY_BYTES + MAX_HEADER_BYTES + max_data


def header_fault(header: BlobHeader) -> str:
    """Why this header breaks the limits ("" when it does not)."""
    if not header.name:
        return "an empty name"
    if len(header.attributes) > MAX_ATTRIBUTES:
        return f"{len(header.attributes)} attributes (at most {MAX_ATTRIBUTES})"
    fields = [("topic", header.topic), ("name", header.name), ("mime_type", header.mime_type)]
    for key, value in header.attributes.items():
        fields += [("an attribute key", key), (f"attribute {key[:20]!r}", value)]
    for what, text in fields:
        size = len(text.encode())
        if size > MAX_FIELD_BYTES:
            return f"{what} of {size} bytes (at most {MAX_FIELD_BYTES})"
    return ""


@dataclass(frozen=True, slots=True)
class BlobShape:
    """What a blob slot says besides seq and time: whose blob it is and where its header ends."""

    stream: int
    processor: int
    header_bytes: int

    def write(self, ring: Ring, data: bytes, seq: int, ts_us: int, flags: int = 0) -> bool:
        return ring.write(
            data, seq, ts_us, KIND_BLOB, FMT_BYTES, flags, self.stream, self.processor, self.header_bytes
        )


def blob_slot(
    stream: int, key: int, processor: int, header: BlobHeader, data: bytes
) -> tuple[BlobShape, bytes]:
    """The shape and payload of a blob slot (worker); ValueError for a header beyond the limits."""
    fault = header_fault(header)
    if fault:
        raise ValueError(f"send_bytes with {fault}")
    encoded = _encoder.encode(header)
    payload = b"".join((key.to_bytes(KEY_BYTES, "little"), encoded, data))
    return BlobShape(stream, processor, len(encoded)), payload


def blob_stream(header: Descriptor) -> int:
    """The index of the stream a blob slot belongs to (to route it before decoding it)."""
    if header.kind != KIND_BLOB or header.fmt != FMT_BYTES:
        raise SlotError(f"malformed slot (kind {header.kind}, seq {header.seq}): not a blob")
    return header.a


def decode_blob(
    header: Descriptor,
    view: memoryview,
    stream_id: str,
    processors: Sequence[str],
    key: int,
    max_data: int,
) -> Blob:
    """A blob slot of the stream `stream_id` (supervisor); copies the data. SlotError unless every field
    checks out: kind, processor index, key, header within its bound and decoding, data within `max_data`."""

    def malformed(why: str) -> SlotError:
        return SlotError(f"malformed blob slot (seq {header.seq}): {why}")

    header_bytes = header.c
    if header.kind != KIND_BLOB or header.fmt != FMT_BYTES:
        raise malformed("not a blob")
    if header.b >= len(processors):
        raise malformed(f"names processor {header.b} of a stream with {len(processors)}")
    if header.length != len(view) or header_bytes > MAX_HEADER_BYTES or KEY_BYTES + header_bytes > len(view):
        raise malformed(f"claims a header of {header_bytes} bytes in {header.length}")
    if len(view) - KEY_BYTES - header_bytes > max_data:
        raise malformed(f"carries {len(view) - KEY_BYTES - header_bytes} bytes, over bytes_max = {max_data}")
    if int.from_bytes(view[:KEY_BYTES], "little") != key:
        raise malformed(f"names stream {header.a} without that stream's key")
    try:
        meta = _decoder.decode(view[KEY_BYTES : KEY_BYTES + header_bytes])
    except msgspec.DecodeError as exc:
        raise malformed(f"header does not decode: {exc}") from None
    fault = header_fault(meta)
    if fault:
        raise malformed(f"header with {fault}")
    return Blob(
        stream_id=stream_id,
        processor=processors[header.b],
        topic=meta.topic,
        name=meta.name,
        mime_type=meta.mime_type,
        attributes=meta.attributes,
        frame_time_us=header.ts_us,
        seq=header.seq,
        data=bytes(view[KEY_BYTES + header_bytes :]),
    )


def blob_attributes(blob: Blob, participant: str, track: str) -> dict[str, str]:
    """A blob's byte-stream attributes in the room: the processor's, then what a result message carries
    (`framepool.pool.results.ResultMessage`), which a processor cannot override."""
    own: Mapping[str, str] = blob.attributes
    return {
        **own,
        "participant": participant,
        "track": track,
        "processor": blob.processor,
        "frame_time_us": str(blob.frame_time_us),
        "seq": str(blob.seq),
    }
