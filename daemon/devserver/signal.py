"""The signal endpoints /rtc/v1, /rtc and /rtc/validate of the loopback dev server (runs in the dev server
process).

One `SignalSession` per connected participant: it owns the websocket and the participant's media
(`MediaSession`, media.py) and is the room's `ParticipantLink` to that client. Requests are protobuf
`SignalRequest`s; anything else (text frames, undecodable or oversized frames) closes the connection
with a websocket close code and a one-line reason, and the participant leaves the room.

`/rtc/v1` is the SDK's default single peer connection: the join request (a base64url
`WrappedJoinRequest`, gzipped or not) carries the client's first offer. `/rtc` is the classic mode
with a server-offered subscriber connection; the SDK falls back to it when /rtc/v1 answers 404.

A participant leaves when its signal connection drops (SIGNAL_CLOSE). Resume (`reconnect=1`) is not
supported, because it needs an ICE restart aiortc does not implement: a resume request gets the leave
livekit-server sends for a participant it no longer has, and the SDK rejoins at once (`_refuse_resume`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from google.protobuf.message import DecodeError
from livekit.protocol import models
from livekit.protocol import rtc as rtc_pb

from framepool.devserver.auth import AuthError, Claims
from framepool.devserver.data import relay_from_client
from framepool.devserver.join import (
    BadJoin,
    authorise,
    classic_join,
    decode_join_request,
    participant_from_claims,
)
from framepool.devserver.media import MediaSession
from framepool.devserver.rooms import Participant, PublishedTrack, Room, RoomRegistry, new_sid
from framepool.tasks import first_of

log = logging.getLogger("framepool.devserver")

MAX_SIGNAL_BYTES = 1 << 20
# How long a disconnect waits for the client's websocket close frame, and a peer connection for its close.
WS_CLOSE_TIMEOUT_S = 1.0
PC_CLOSE_TIMEOUT_S = 2.0
PING_INTERVAL_S = 5
PING_TIMEOUT_S = 15
# The livekit-server whose data plane this server mirrors: 1.13.2 is the first to pass each client's
# client_protocol and capabilities to the others (ParticipantInfo), from which their SDKs choose RPC v2
# (server >= 1.8.0 and callee client_protocol >= 1) and inline, compressed data streams (>= 2, and
# CAP_COMPRESSION_DEFLATE_RAW). Build metadata keeps the precedence of 1.13.2 (the SDK parses semver).
PROTOCOL_VERSION = 17
SERVER_VERSION = "1.13.2+framepool-dev"


class SignalSession:
    """The server side of one participant's signal websocket; the room's ParticipantLink to that client."""

    def __init__(
        self,
        registry: RoomRegistry,
        ws: web.WebSocketResponse,
        participant: Participant,
        single_pc: bool,
        verbose: bool,
    ) -> None:
        self.registry = registry
        self.ws = ws
        self.participant = participant
        participant.link = self
        self.verbose = verbose
        self.room: Room | None = None
        self.media = MediaSession(self, single_pc)
        self.left = asyncio.Event()
        self._reason = models.DisconnectReason.CLIENT_INITIATED

    async def send(self, response: rtc_pb.SignalResponse) -> None:
        if self.ws.closed:
            return
        if self.verbose:
            log.info("signal > %s %s", self.participant.identity, _summary(response))
        try:
            await self.ws.send_bytes(response.SerializeToString())
        except (ConnectionError, RuntimeError):
            self.left.set()

    async def disconnect(self, reason: models.DisconnectReason) -> None:
        """Tell the client to leave (no reconnect), then close its connection."""
        self._reason = reason
        await self.send(
            rtc_pb.SignalResponse(
                leave=rtc_pb.LeaveRequest(
                    can_reconnect=False, reason=reason, action=rtc_pb.LeaveRequest.Action.DISCONNECT
                )
            )
        )
        self.left.set()
        await self.ws.close(code=WSCloseCode.OK, message=models.DisconnectReason.Name(reason).encode())

    async def subscribe(self, track: PublishedTrack) -> None:
        await self.media.subscribe(track)

    async def unsubscribe(self, track_sid: str) -> None:
        await self.media.unsubscribe(track_sid)

    def send_data(self, payload: bytes, reliable: bool) -> None:
        self.media.send_data(payload, reliable)

    async def run(self, room: Room, join: rtc_pb.JoinRequest) -> None:
        """Join, then serve requests until the client leaves or the connection drops."""
        self.room = room
        settings = join.connection_settings
        self.participant.auto_subscribe = (
            settings.auto_subscribe if join.HasField("connection_settings") else True
        )
        try:
            await room.join(self.participant)
            await self.send(self._join_response(room))
            existing = [
                t for p in room.participants.values() if p is not self.participant for t in p.tracks.values()
            ]
            if self.participant.auto_subscribe and self.participant.permission.can_subscribe:
                for track in existing:
                    await self.media.subscribe(track, renegotiate=False)
            if join.HasField("publisher_offer"):
                await self.media.handle_offer(join.publisher_offer)
            await self.media.start()
            await self._serve()
        finally:
            await room.leave(self.participant, self._reason)
            try:
                await asyncio.wait_for(self.media.close(), PC_CLOSE_TIMEOUT_S)
            except TimeoutError:
                log.warning(
                    "peer connection of %s did not close within %.0f s",
                    self.participant.identity,
                    PC_CLOSE_TIMEOUT_S,
                )
            if not self.ws.closed:
                await self.ws.close()

    def _join_response(self, room: Room) -> rtc_pb.SignalResponse:
        return rtc_pb.SignalResponse(
            join=rtc_pb.JoinResponse(
                room=room.to_proto(),
                participant=self.participant.to_proto(),
                other_participants=[p.to_proto() for p in room.visible(exclude=self.participant)],
                server_version=SERVER_VERSION,
                subscriber_primary=not self.media.single_pc,
                ping_interval=PING_INTERVAL_S,
                ping_timeout=PING_TIMEOUT_S,
                server_info=models.ServerInfo(
                    edition=models.ServerInfo.Edition.Standard,
                    version=SERVER_VERSION,
                    protocol=PROTOCOL_VERSION,
                    node_id="framepool-dev",
                ),
            )
        )

    async def _serve(self) -> None:
        await first_of({"receiving": self._receive_loop(), "left": self.left.wait()})

    async def _receive_loop(self) -> None:
        async for message in self.ws:
            if message.type == WSMsgType.BINARY:
                try:
                    request = rtc_pb.SignalRequest.FromString(message.data)
                except DecodeError:
                    await self._refuse(WSCloseCode.UNSUPPORTED_DATA, "undecodable SignalRequest")
                    return
                if self.verbose:
                    log.info("signal < %s %s", self.participant.identity, _summary(request))
                await self._handle(request)
                if self.left.is_set():
                    return
            elif message.type == WSMsgType.TEXT:
                await self._refuse(WSCloseCode.UNSUPPORTED_DATA, "text frames are not SignalRequests")
                return
            elif message.type == WSMsgType.ERROR:
                log.warning(
                    "signal connection error identity=%s: %s", self.participant.identity, self.ws.exception()
                )
                self._reason = models.DisconnectReason.SIGNAL_CLOSE
                return
        self._reason = models.DisconnectReason.SIGNAL_CLOSE

    async def _refuse(self, code: int, reason: str) -> None:
        log.warning("signal refused identity=%s: %s", self.participant.identity, reason)
        self._reason = models.DisconnectReason.JOIN_FAILURE
        await self.ws.close(code=code, message=reason.encode())

    async def _handle(self, request: rtc_pb.SignalRequest) -> None:
        kind = request.WhichOneof("message")
        room = self.room
        assert room is not None
        if kind == "offer":
            await self.media.handle_offer(request.offer)
        elif kind == "answer":
            await self.media.handle_answer(request.answer)
        elif kind == "trickle":
            await self.media.add_candidate(request.trickle)
        elif kind == "add_track":
            await self._add_track(request.add_track)
        elif kind == "mute":
            await room.set_muted(self.participant, request.mute.sid, request.mute.muted)
        elif kind == "subscription":
            await self._update_subscription(room, request.subscription)
        elif kind == "leave":
            self._reason = models.DisconnectReason.CLIENT_INITIATED
            self.left.set()
        elif kind == "ping":
            await self.send(rtc_pb.SignalResponse(pong=request.ping))
        elif kind == "ping_req":
            await self.send(
                rtc_pb.SignalResponse(
                    pong_resp=rtc_pb.Pong(
                        last_ping_timestamp=request.ping_req.timestamp, timestamp=int(time.time() * 1000)
                    )
                )
            )
        elif kind == "update_metadata":
            await self._update_metadata(room, request.update_metadata)

    async def _add_track(self, add: rtc_pb.AddTrackRequest) -> None:
        permission = self.participant.permission
        allowed = permission.can_publish and (
            not permission.can_publish_sources or add.source in permission.can_publish_sources
        )
        if not allowed:
            log.info(
                "publish refused room=%s identity=%s: no permission",
                self.room.name if self.room else "",
                self.participant.identity,
            )
            await self.send(
                rtc_pb.SignalResponse(
                    request_response=rtc_pb.RequestResponse(
                        reason=rtc_pb.RequestResponse.Reason.NOT_ALLOWED,
                        message="does not have permission to publish",
                        add_track=add,
                    )
                )
            )
            return
        info = models.TrackInfo(
            sid=new_sid("TR_"),
            type=add.type,
            name=add.name,
            muted=add.muted,
            width=add.width,
            height=add.height,
            simulcast=len(add.layers) > 1,
            disable_dtx=add.disable_dtx,
            source=add.source,
            layers=add.layers,
            stereo=add.stereo or models.AudioTrackFeature.TF_STEREO in add.audio_features,
            audio_features=audio_features(add),
            disable_red=add.disable_red,
            stream=add.stream,
            mime_type="audio/opus" if add.type == models.TrackType.AUDIO else "video/VP8",
        )
        self.media.expect_track(add.cid, PublishedTrack(self.participant, info))
        await self.send(
            rtc_pb.SignalResponse(track_published=rtc_pb.TrackPublishedResponse(cid=add.cid, track=info))
        )

    async def _update_subscription(self, room: Room, update: rtc_pb.UpdateSubscription) -> None:
        sids = list(update.track_sids) + [sid for pt in update.participant_tracks for sid in pt.track_sids]
        for sid in sids:
            track = room.find_track(sid)
            if track is None or track.owner is self.participant:
                continue
            if update.subscribe and self.participant.permission.can_subscribe:
                await self.media.subscribe(track)
            elif not update.subscribe:
                await self.media.unsubscribe(sid)

    async def _update_metadata(self, room: Room, update: rtc_pb.UpdateParticipantMetadata) -> None:
        if not self.participant.permission.can_update_metadata:
            await self.send(
                rtc_pb.SignalResponse(
                    request_response=rtc_pb.RequestResponse(
                        request_id=update.request_id,
                        reason=rtc_pb.RequestResponse.Reason.NOT_ALLOWED,
                        message="does not have permission to update own metadata",
                        update_metadata=update,
                    )
                )
            )
            return
        await room.update_participant(
            self.participant.identity,
            metadata=update.metadata or None,
            name=update.name or None,
            attributes=dict(update.attributes) or None,
        )
        if update.request_id:
            await self.send(
                rtc_pb.SignalResponse(
                    request_response=rtc_pb.RequestResponse(
                        request_id=update.request_id,
                        reason=rtc_pb.RequestResponse.Reason.OK,
                        update_metadata=update,
                    )
                )
            )

    def on_published(self, track: PublishedTrack) -> None:
        """The media of an announced track is arriving: make it visible to the room."""
        if self.room is not None:
            self.registry.spawn(self.room.publish(self.participant, track))

    def on_unpublished(self, track: PublishedTrack) -> None:
        if self.room is not None:
            self.registry.spawn(self.room.unpublish(self.participant, track.sid))

    def on_data(self, payload: bytes, reliable: bool) -> None:
        """A DataPacket from the client's _reliable or _lossy channel: relay it (data.py), in order."""
        if self.room is None:
            return
        try:
            relay_from_client(self.room, self.participant, payload, reliable)
        except Exception:  # called from aiortc's SCTP receive path: a failure must not break the transport
            log.exception("relaying a data packet from %s failed", self.participant.identity)


def _summary(message: Any) -> str:
    kind = message.WhichOneof("message")
    body = getattr(message, kind) if kind else None
    text = str(body).replace("\n", " ")[:120] if body is not None else ""
    return f"{kind} {text}"


async def handle_rtc(
    request: web.Request, registry: RoomRegistry, keys: dict[str, str], single_pc: bool, verbose: bool
) -> web.StreamResponse:
    """Authorise, decode the join request and run the participant's signal session."""
    try:
        claims = authorise(request, keys)
        join = (
            decode_join_request(request.query.get("join_request", "")) if single_pc else classic_join(request)
        )
    except (AuthError, BadJoin) as exc:
        log.info("join refused %s: %s %s", request.path, exc.status, exc.message)
        return web.Response(status=exc.status, text=exc.message)
    if registry.closing:
        return web.Response(status=503, text="server is shutting down")
    if join.reconnect:
        return await _refuse_resume(request, claims, join)
    participant = participant_from_claims(
        claims, join.metadata, dict(join.participant_attributes), join.client_info
    )
    video = claims.video
    assert video is not None
    room = registry.get(video.room) or await _create_room(registry, video.room, claims)
    if not room.admit(participant):
        # livekit-server fails the join before upgrading the websocket (ErrMaxParticipantsExceeded, HTTP 500).
        log.info(
            "join refused room=%s identity=%s: room is full (%d)",
            room.name,
            participant.identity,
            room.max_participants,
        )
        return web.Response(status=500, text="room has exceeded its max participants")
    ws = web.WebSocketResponse(max_msg_size=MAX_SIGNAL_BYTES, autoping=True, timeout=WS_CLOSE_TIMEOUT_S)
    try:
        await ws.prepare(request)
    except BaseException:
        room.release(participant)
        raise
    await SignalSession(registry, ws, participant, single_pc, verbose).run(room, join)
    return ws


async def _create_room(registry: RoomRegistry, name: str, claims: Claims) -> Room:
    """The room a join creates, configured by the token's roomConfig when it has one."""
    config = claims.room_config
    if config is None:
        return await registry.create(name)
    return await registry.create(
        name,
        empty_timeout=config.empty_timeout,
        departure_timeout=config.departure_timeout,
        max_participants=config.max_participants,
        metadata=config.metadata,
        agents=list(config.agents),
    )


async def _refuse_resume(
    request: web.Request, claims: Claims, join: rtc_pb.JoinRequest
) -> web.WebSocketResponse:
    """Answer a resume (reconnect=1) the way livekit-server answers one for a participant it no longer has.

    The dev server cannot resume: a participant leaves when its signal connection drops, and a resume
    would need an ICE restart, which aiortc does not implement. livekit-server's answer for that case is
    a LeaveRequest asking for a full reconnect (STATE_MISMATCH, RECONNECT); the SDK then joins afresh at
    once and republishes its tracks, instead of waiting seconds for a ReconnectResponse that never comes.
    """
    log.info(
        "resume refused identity=%s sid=%s: asking the client to reconnect",
        claims.identity,
        join.participant_sid,
    )
    ws = web.WebSocketResponse(max_msg_size=MAX_SIGNAL_BYTES, timeout=WS_CLOSE_TIMEOUT_S)
    await ws.prepare(request)
    leave = rtc_pb.LeaveRequest(
        can_reconnect=True,
        reason=models.DisconnectReason.STATE_MISMATCH,
        action=rtc_pb.LeaveRequest.Action.RECONNECT,
    )
    await ws.send_bytes(rtc_pb.SignalResponse(leave=leave).SerializeToString())
    await ws.close(code=WSCloseCode.OK, message=b"STATE_MISMATCH")
    return ws


async def handle_validate(request: web.Request, keys: dict[str, str]) -> web.Response:
    try:
        authorise(request, keys)
    except AuthError as exc:
        return web.Response(status=exc.status, text=exc.message)
    return web.Response(text="success")


def audio_features(add: rtc_pb.AddTrackRequest) -> list[models.AudioTrackFeature]:
    """A published track's audio features as LiveKit's server announces them: the publisher's, with
    TF_STEREO also when it set only the older `stereo` flag (subscribers read the features)."""
    features: list[models.AudioTrackFeature] = list(add.audio_features)
    if add.stereo and models.AudioTrackFeature.TF_STEREO not in features:
        features.append(models.AudioTrackFeature.TF_STEREO)
    return features
