"""How the dev server admits a join (dev server process): the token's grants, the join request's encoding
(/rtc/v1's wrapped, possibly gzipped JoinRequest, or the classic /rtc query) and the participant they make.
"""

from __future__ import annotations

import base64
import binascii
import gzip

from aiohttp import web
from google.protobuf.message import DecodeError
from livekit.protocol import models
from livekit.protocol import rtc as rtc_pb

from framepool.devserver.auth import AuthError, Claims, verify_request
from framepool.devserver.rooms import Participant

_KIND_NAMES = {
    "standard": models.ParticipantInfo.Kind.STANDARD,
    "agent": models.ParticipantInfo.Kind.AGENT,
    "ingress": models.ParticipantInfo.Kind.INGRESS,
    "egress": models.ParticipantInfo.Kind.EGRESS,
    "sip": models.ParticipantInfo.Kind.SIP,
}


_SDK_NAMES = {
    "js": models.ClientInfo.SDK.JS,
    "ios": models.ClientInfo.SDK.SWIFT,
    "swift": models.ClientInfo.SDK.SWIFT,
    "android": models.ClientInfo.SDK.ANDROID,
    "flutter": models.ClientInfo.SDK.FLUTTER,
    "go": models.ClientInfo.SDK.GO,
    "unity": models.ClientInfo.SDK.UNITY,
    "reactnative": models.ClientInfo.SDK.REACT_NATIVE,
    "rust": models.ClientInfo.SDK.RUST,
    "python": models.ClientInfo.SDK.PYTHON,
    "cpp": models.ClientInfo.SDK.CPP,
    "unityweb": models.ClientInfo.SDK.UNITY_WEB,
    "node": models.ClientInfo.SDK.NODE,
    "esp32": models.ClientInfo.SDK.ESP32,
}

_CAPABILITY_NAMES = frozenset(models.ClientInfo.Capability.keys())


class BadJoin(Exception):
    """A join request that cannot be honoured, with the HTTP status livekit-server answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_join_request(encoded: str) -> rtc_pb.JoinRequest:
    """Decode /rtc/v1's `join_request` parameter; BadJoin(400) when it is not a valid WrappedJoinRequest."""
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        wrapped = rtc_pb.WrappedJoinRequest.FromString(raw)
        body = wrapped.join_request
        if wrapped.compression == rtc_pb.WrappedJoinRequest.Compression.GZIP:
            body = gzip.decompress(body)
        return rtc_pb.JoinRequest.FromString(body)
    except (binascii.Error, ValueError, DecodeError, OSError, EOFError) as exc:
        raise BadJoin(400, f"invalid join request: {exc}") from exc


def participant_from_claims(
    claims: Claims, metadata: str, attributes: dict[str, str], client_info: models.ClientInfo
) -> Participant:
    video = claims.video
    assert video is not None
    permission = models.ParticipantPermission(
        can_subscribe=video.can_subscribe,
        can_publish=video.can_publish,
        can_publish_data=video.can_publish_data,
        hidden=bool(video.hidden),
        can_update_metadata=bool(video.can_update_own_metadata),
        agent=bool(video.agent),
        can_subscribe_metrics=bool(video.can_subscribe_metrics),
    )
    for source in video.can_publish_sources or []:
        permission.can_publish_sources.append(models.TrackSource.Value(source.upper()))  # type: ignore[arg-type]
    merged = dict(claims.attributes or {})
    merged.update(attributes)
    return Participant(
        claims.identity,
        name=claims.name,
        kind=_KIND_NAMES.get(claims.kind or "standard", 0),
        metadata=claims.metadata or metadata,
        attributes=merged,
        permission=permission,
        client_info=client_info,
    )


def authorise(request: web.Request, keys: dict[str, str]) -> Claims:
    """Claims of a request allowed to join the room it names; AuthError otherwise."""
    claims = verify_request(request, keys)
    video = claims.video
    # livekit-server answers every grant failure of a join with 401 "permissions denied" (not 403).
    if video is None or not video.room_join:
        raise AuthError(401, "permissions denied: token has no roomJoin grant")
    if not video.room:
        raise AuthError(401, "permissions denied: token names no room")
    if not claims.identity:
        raise AuthError(401, "permissions denied: token has no identity")
    return claims


def classic_join(request: web.Request) -> rtc_pb.JoinRequest:
    """The classic /rtc query (client info, auto_subscribe, metadata, reconnect, sid) as a JoinRequest
    without an offer."""
    join = rtc_pb.JoinRequest(
        metadata=request.query.get("metadata", ""),
        reconnect=request.query.get("reconnect", "0") in ("1", "true"),
        participant_sid=request.query.get("sid", ""),
    )
    join.client_info.CopyFrom(client_info_from_query(request))
    auto = request.query.get("auto_subscribe", "1")
    join.connection_settings.auto_subscribe = auto not in ("0", "false")
    return join


def client_info_from_query(request: web.Request) -> models.ClientInfo:
    """The classic /rtc query's client description, parsed as livekit-server's ParseClientInfo does.

    `protocol` is the signal protocol; `client_protocol` and the comma-separated `capabilities` names are
    what other clients read from ParticipantInfo (RPC v2, inline and compressed data streams).
    """
    query = request.query
    info = models.ClientInfo(
        version=query.get("version", ""),
        os=query.get("os", ""),
        os_version=query.get("os_version", ""),
        device_model=query.get("device_model", ""),
        browser=query.get("browser", ""),
        browser_version=query.get("browser_version", ""),
        network=query.get("network", ""),
        sdk=_SDK_NAMES.get(query.get("sdk", ""), models.ClientInfo.SDK.UNKNOWN),
        protocol=_int32(query.get("protocol", "")),
        client_protocol=_int32(query.get("client_protocol", "")),
    )
    for name in query.get("capabilities", "").split(","):
        if name.strip() in _CAPABILITY_NAMES:
            info.capabilities.append(models.ClientInfo.Capability.Value(name.strip()))  # type: ignore[arg-type]
    return info


def _int32(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        return 0
    return value if -(2**31) <= value < 2**31 else 0
