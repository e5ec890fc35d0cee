"""How the loopback dev server relays data packets between participants (runs in the dev server process).

It does what livekit-server does (pkg/rtc/participant.go `handleReceivedDataMessage`, pkg/rtc/room.go
`BroadcastDataPacketForRoom`), so an SDK sees the same packets it would see from LiveKit:

- Only packets from the `_reliable` and `_lossy` channels are DataPackets (media.py); a sender without
  `canPublishData` is ignored; an undecodable packet is dropped. The channel a packet came on decides its
  `kind`; `participant_sid` is always the sender's.
- The sender's identity is stamped on the packet (and, for a user packet, on the UserPacket), except that
  a hidden sender's identity is blanked, and an agent may speak for another participant: its chat
  messages and text streams that name another identity keep that identity and are marked `generated`.
- Every value kind is forwarded: user packets, SIP DTMF, chat messages, RPC request/ack/response, stream
  header/chunk/trailer, encrypted packets (ciphertext and `iv` untouched), and kinds this server does not
  know. Two are not: a transcription from a participant that is not an agent (livekit-server forwards
  only agents' transcriptions), and metrics (livekit-server routes them to metrics subscribers, which
  this server does not implement). Both are counted.
- A reliable packet with a `sequence` not above the sender's last one is a duplicate and is dropped; a
  user packet whose 16-byte `nonce` is among the room's last 100 is dropped as a duplicate (the SDK
  resends with the same nonce).
- Destinations: `destination_identities` of the packet or its UserPacket (each copied to the other), and
  the UserPacket's deprecated `destination_sids`; none means everyone but the sender.

Every relayed and dropped packet is counted per room (`RoomData`) and handed to registry listeners that
have a `data_relayed(room, sender, packet)` method, synchronously and in arrival order.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from livekit.protocol import models

if TYPE_CHECKING:
    from framepool.devserver.rooms import Participant, Room

log = logging.getLogger("framepool.devserver")

# livekit-server's UserPacketDeduper keeps the nonces of the last 100 user packets of a room.
USER_NONCES_KEPT = 100
NONCE_BYTES = 16


class RoomData:
    """A room's data-plane state: recent user-packet nonces and what was relayed or dropped, by kind."""

    def __init__(self) -> None:
        self.relayed: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._nonces: OrderedDict[bytes, None] = OrderedDict()

    def is_duplicate(self, user: models.UserPacket) -> bool:
        """True when this user packet's nonce was seen lately (no or malformed nonce: never)."""
        nonce = bytes(user.nonce)
        if len(nonce) != NONCE_BYTES:
            return False
        if nonce in self._nonces:
            return True
        self._nonces[nonce] = None
        if len(self._nonces) > USER_NONCES_KEPT:
            self._nonces.popitem(last=False)
        return False


def relay_from_client(room: Room, sender: Participant, payload: bytes, reliable: bool) -> None:
    """A DataPacket a client sent on its `_reliable` or `_lossy` channel: stamp it and forward it."""
    if not sender.permission.can_publish_data:
        room.data.dropped["no_permission"] += 1
        return
    try:
        packet = models.DataPacket.FromString(payload)
    except DecodeError:
        log.warning("undecodable data packet from %s dropped", sender.identity)
        room.data.dropped["undecodable"] += 1
        return
    packet.participant_sid = sender.sid
    if reliable and packet.sequence > 0:
        if packet.sequence <= sender.last_reliable_seq:
            room.data.dropped["out_of_order"] += 1
            return
        sender.last_reliable_seq = packet.sequence
    packet.kind = models.DataPacket.Kind.RELIABLE if reliable else models.DataPacket.Kind.LOSSY
    drop = _stamp(sender, packet)
    if drop:
        room.data.dropped[drop] += 1
        return
    broadcast(room, packet, sender)


def _stamp(sender: Participant, packet: models.DataPacket) -> str:
    """Stamp the sender on a packet from a client; the reason it is not forwarded, or ""."""
    kind = packet.WhichOneof("value") or ""
    identity = "" if sender.permission.hidden else sender.identity
    keep_identity = False
    speaks_for_other = sender.is_agent and packet.participant_identity not in ("", sender.identity)
    if kind == "user":
        packet.user.participant_sid = "" if sender.permission.hidden else sender.sid
        packet.user.participant_identity = identity
    elif kind == "transcription" and not sender.is_agent:
        return "transcription_not_agent"
    elif kind == "metrics":
        return "metrics"
    elif kind == "chat_message" and speaks_for_other:
        keep_identity = True
        packet.chat_message.generated = True
    elif kind == "stream_header" and speaks_for_other and packet.stream_header.HasField("text_header"):
        keep_identity = True
        packet.stream_header.text_header.generated = True
    elif not kind:
        log.warning("data packet without a value from %s forwarded", sender.identity)
    if not keep_identity:
        packet.participant_identity = identity
    return ""


def broadcast(room: Room, packet: models.DataPacket, sender: Participant | None) -> None:
    """Deliver a stamped packet to its destinations (everyone but the sender when it names none)."""
    kind = packet.WhichOneof("value") or "none"
    destination_sids: list[str] = []
    if packet.HasField("user"):
        user = packet.user
        if room.data.is_duplicate(user):
            room.data.dropped["duplicate_nonce"] += 1
            return
        if packet.destination_identities:
            user.destination_identities[:] = packet.destination_identities
        else:
            packet.destination_identities[:] = user.destination_identities
        if packet.participant_identity:
            user.participant_identity = packet.participant_identity
        else:
            packet.participant_identity = user.participant_identity
        destination_sids = list(user.destination_sids)
    identities = set(packet.destination_identities)
    sids = set(destination_sids)
    reliable = packet.kind != models.DataPacket.Kind.LOSSY
    payload = packet.SerializeToString()
    for participant in list(room.participants.values()):
        if participant is sender or participant.link is None:
            continue
        if (identities or sids) and participant.identity not in identities and participant.sid not in sids:
            continue
        participant.link.send_data(payload, reliable)
    room.data.relayed[kind] += 1
    room.registry.tap_data(room, sender, packet)
