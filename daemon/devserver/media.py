"""One participant's peer connection(s) in the loopback dev server (runs in the dev server process).

Single peer connection (/rtc/v1, the SDK's default): the client always offers. Its offer carries the
tracks it publishes (sendonly m-lines, matched to AddTrackRequests through the msid track id, which is
the request's cid) and spare recvonly m-lines. Tracks the server sends down fill those spare m-lines;
the answer's `mid_to_track_id` names the track on each. The server never offers in this mode: when it
has more tracks to send than spare m-lines it sends `media_sections_requirement` and the client adds
m-lines and offers again. An m-line whose track went away is not reused (its msid would not change, so
the client would not see a new track on it).

Classic (/rtc, or the SDK's fallback when /rtc/v1 answers 404): the client offers on its publisher
connection and the server offers on a subscriber connection that also carries the server's
`_reliable`/`_lossy` data channels. Every subscription gets a fresh sendonly m-line and every
unsubscription a re-offer with that m-line inactive, for the same reason as above.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import TYPE_CHECKING

from aiortc import RTCDataChannel, RTCSessionDescription
from aiortc.rtcpeerconnection import RTCPeerConnection
from aiortc.sdp import candidate_from_sdp
from livekit.protocol import models
from livekit.protocol import rtc as rtc_pb

from framepool.devserver.rooms import PublishedTrack
from framepool.devserver.rtc import ProxyTrack, media_sections, munge_answer, new_peer_connection

if TYPE_CHECKING:
    from framepool.devserver.signal import SignalSession

log = logging.getLogger("framepool.devserver")

DATA_PACKET_CHANNELS = ("_reliable", "_lossy")


class Downstream:
    """One track this participant receives: the proxy feeding its m-line, and the mid once placed."""

    def __init__(self, track: PublishedTrack) -> None:
        self.track = track
        self.kind = track.relay.kind
        self.proxy = ProxyTrack(self.kind, track.relay)
        # Unique per subscription: a track subscribed again on a new m-line must not repeat an msid.
        self.proxy._id = f"{track.sid}.{secrets.token_hex(3)}"
        self.mid: str | None = None


class MediaSession:
    """The peer connection(s) of one participant, their data channels and what flows on them."""

    def __init__(self, session: SignalSession, single_pc: bool) -> None:
        self.session = session
        self.single_pc = single_pc
        self.publisher: RTCPeerConnection = new_peer_connection()
        self.subscriber: RTCPeerConnection = self.publisher if single_pc else new_peer_connection()
        self.expected: dict[str, PublishedTrack] = {}
        self.bound: dict[str, PublishedTrack] = {}
        self.free_mids: dict[str, list[str]] = {"audio": [], "video": []}
        self.downstream: dict[str, Downstream] = {}
        self.pending: list[Downstream] = []
        self.channels: dict[str, RTCDataChannel] = {}
        # Reliable packets for a client whose channel is not open yet: delivered once it opens.
        self.unsent: list[bytes] = []
        self._negotiating = asyncio.Lock()
        self._offer_outstanding = False
        self._offer_again = False
        self._offer_id = 0
        self.publisher.on("datachannel", self._on_datachannel)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        """A channel the client opened: `_reliable` and `_lossy` carry DataPackets, relayed in arrival order.

        Others (the SDK's `_data_track`, for data tracks) are not DataPackets; this server ignores them.
        """
        if channel.label not in DATA_PACKET_CHANNELS:
            log.debug("data channel %r of %s ignored", channel.label, self.session.participant.identity)
            return
        reliable = channel.label == "_reliable"
        if self.single_pc:
            self.channels[channel.label] = channel
            if channel.readyState == "open":
                self._flush()
            channel.on("open", self._flush)

        @channel.on("message")
        def on_message(message: bytes | str) -> None:
            if isinstance(message, bytes):
                self.session.on_data(message, reliable)

    def expect_track(self, cid: str, track: PublishedTrack) -> None:
        """An AddTrackRequest was accepted: its media will come on an m-line whose msid names `cid`."""
        self.expected[cid] = track

    async def start(self) -> None:
        """Classic mode: open the subscriber connection with the server's data channels."""
        if self.single_pc:
            return
        self.channels["_reliable"] = self.subscriber.createDataChannel("_reliable", ordered=True)
        self.channels["_lossy"] = self.subscriber.createDataChannel("_lossy", ordered=False, maxRetransmits=0)
        self.channels["_reliable"].on("open", self._flush)
        await self._offer_subscriber()

    async def handle_offer(self, offer: rtc_pb.SessionDescription) -> None:
        """An offer on the publisher connection: bind published tracks, place pending downstream, answer."""
        async with self._negotiating:
            pc = self.publisher
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            sections = media_sections(offer.sdp)
            self._bind_published(sections)
            if self.single_pc:
                self._place_downstream(sections)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            sdp = munge_answer(offer.sdp, pc.localDescription.sdp)
            mapping = {d.mid: d.track.sid for d in self.downstream.values() if d.mid is not None}
            await self.session.send(
                rtc_pb.SignalResponse(
                    answer=rtc_pb.SessionDescription(
                        type="answer", sdp=sdp, id=offer.id, mid_to_track_id=mapping if self.single_pc else {}
                    )
                )
            )
        if self.single_pc and self.pending:
            await self._request_sections()

    def _bind_published(self, sections: list[tuple[str, str, str, str | None]]) -> None:
        transceivers = {t.mid: t for t in self.publisher.getTransceivers()}
        for kind, mid, direction, track_id in sections:
            if direction not in ("sendonly", "sendrecv"):
                self._unbind(mid)
                continue
            if mid in self.bound or mid not in transceivers:
                continue
            cid = track_id if track_id in self.expected else self._first_expected(kind)
            if cid is None:
                continue
            track = self.expected.pop(cid)
            self.bound[mid] = track
            track.info.mid = mid
            track.relay.start(transceivers[mid].receiver.track)
            self.session.on_published(track)

    def _unbind(self, mid: str) -> None:
        """The client stopped sending on an m-line: its track was unpublished."""
        track = self.bound.pop(mid, None)
        if track is not None:
            self.session.on_unpublished(track)

    def _first_expected(self, kind: str) -> str | None:
        wanted = models.TrackType.AUDIO if kind == "audio" else models.TrackType.VIDEO
        return next((cid for cid, t in self.expected.items() if t.info.type == wanted), None)

    def _place_downstream(self, sections: list[tuple[str, str, str, str | None]]) -> None:
        used = {d.mid for d in self.downstream.values()}
        for kind, mid, direction, _ in sections:
            if direction == "recvonly" and mid not in used and mid not in self.free_mids[kind]:
                self.free_mids[kind].append(mid)
        transceivers = {t.mid: t for t in self.subscriber.getTransceivers()}
        for down in list(self.pending):
            free = self.free_mids[down.kind]
            if not free:
                continue
            mid = free.pop(0)
            transceiver = transceivers[mid]
            transceiver.direction = "sendonly"
            transceiver.sender.replaceTrack(down.proxy)
            transceiver.sender._stream_id = f"{down.track.owner.sid}|{down.track.sid}"
            down.mid = mid
            self.pending.remove(down)

    async def _request_sections(self) -> None:
        audios = sum(1 for d in self.pending if d.kind == "audio")
        await self.session.send(
            rtc_pb.SignalResponse(
                media_sections_requirement=rtc_pb.MediaSectionsRequirement(
                    num_audios=audios, num_videos=len(self.pending) - audios
                )
            )
        )

    async def subscribe(self, track: PublishedTrack, renegotiate: bool = True) -> None:
        """Send `track` to this participant (idempotent)."""
        if track.sid in self.downstream:
            return
        down = Downstream(track)
        self.downstream[track.sid] = down
        if not self.single_pc:
            # A fresh m-line per subscription (addTrack would reuse an inactive one), as in single-PC mode.
            transceiver = self.subscriber.addTransceiver(down.proxy, direction="sendonly")
            transceiver.sender._stream_id = f"{track.owner.sid}|{track.sid}"
            if renegotiate:
                await self._offer_subscriber()
            return
        self.pending.append(down)
        if renegotiate:
            await self._request_sections()

    async def unsubscribe(self, track_sid: str) -> None:
        down = self.downstream.pop(track_sid, None)
        if down is None:
            return
        down.proxy.stop()
        if down in self.pending:
            self.pending.remove(down)
        # Inactive from the next negotiation on; the m-line is not reused (module docstring).
        for transceiver in self.subscriber.getTransceivers():
            if transceiver.sender.track is down.proxy:
                transceiver.direction = "inactive"
                transceiver.sender.replaceTrack(None)
        if not self.single_pc:
            await self._offer_subscriber()

    async def _offer_subscriber(self) -> None:
        """Classic mode: (re)offer the subscriber connection; one offer in flight at a time."""
        if self._offer_outstanding:
            self._offer_again = True
            return
        self._offer_outstanding = True
        self._offer_again = False
        offer = await self.subscriber.createOffer()
        await self.subscriber.setLocalDescription(offer)
        self._offer_id += 1
        await self.session.send(
            rtc_pb.SignalResponse(
                offer=rtc_pb.SessionDescription(
                    type="offer", sdp=self.subscriber.localDescription.sdp, id=self._offer_id
                )
            )
        )

    async def handle_answer(self, answer: rtc_pb.SessionDescription) -> None:
        if self.single_pc or not self._offer_outstanding:
            return
        await self.subscriber.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        self._offer_outstanding = False
        if self._offer_again:
            await self._offer_subscriber()

    async def add_candidate(self, trickle: rtc_pb.TrickleRequest) -> None:
        """A trickled client candidate (JSON candidateInit) for the connection it targets."""
        try:
            init = json.loads(trickle.candidateInit)
            text = init.get("candidate", "")
        except (ValueError, AttributeError):
            log.warning("malformed trickle candidate from %s ignored", self.session.participant.identity)
            return
        if not text:
            return
        pc = self.subscriber if trickle.target == rtc_pb.SignalTarget.SUBSCRIBER else self.publisher
        try:
            candidate = candidate_from_sdp(text.split(":", 1)[1] if text.startswith("candidate:") else text)
        except (ValueError, IndexError):
            log.warning("unparsable trickle candidate from %s ignored", self.session.participant.identity)
            return
        candidate.sdpMid = init.get("sdpMid")
        candidate.sdpMLineIndex = init.get("sdpMLineIndex")
        await pc.addIceCandidate(candidate)

    def send_data(self, payload: bytes, reliable: bool) -> None:
        channel = self.channels.get("_reliable" if reliable else "_lossy")
        if channel is not None and channel.readyState == "open":
            channel.send(payload)
        elif reliable:
            self.unsent.append(payload)

    def _flush(self) -> None:
        channel = self.channels.get("_reliable")
        if channel is not None and channel.readyState == "open":
            for payload in self.unsent:
                channel.send(payload)
            self.unsent.clear()

    async def close(self) -> None:
        for down in self.downstream.values():
            down.proxy.stop()
        self.downstream.clear()
        for track in self.expected.values():
            track.relay.stop()
        await self.publisher.close()
        if self.subscriber is not self.publisher:
            await self.subscriber.close()
