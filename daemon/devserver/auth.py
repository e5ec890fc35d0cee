"""Access-token checks shared by the dev server's endpoints (runs in the dev server process).

Every endpoint of the loopback server (signal, Twirp, /agent) authenticates the same way
livekit-server does: an HS256 JWT signed with one of the configured API secrets, issued by
(``iss``) the matching API key, sent as ``Authorization: Bearer <jwt>`` or, for browsers and
websockets that cannot set headers, as the ``access_token`` query parameter. A missing,
malformed, badly signed or expired token is 401; a valid token that lacks the grant an
operation needs is also 401 ("permissions denied"), as livekit-server answers both
(:func:`require_room_create` and friends).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import jwt
from aiohttp import web
from jwt.warnings import InsecureKeyLengthWarning
from livekit.api import TokenVerifier
from livekit.api.access_token import Claims, VideoGrants

__all__ = [
    "AuthError",
    "Claims",
    "quiet_short_secrets",
    "require_agent",
    "require_room_admin",
    "require_room_create",
    "require_room_list",
    "token_from_request",
    "verify_request",
    "verify_token",
]


class AuthError(Exception):
    """An authentication or authorisation failure with the HTTP status livekit-server answers (401 for
    both)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@contextmanager
def quiet_short_secrets() -> Iterator[None]:
    """Silence PyJWT's short-HMAC-key warning for one sign/verify.

    The dev server's default secret ("secret", as livekit-server --dev uses) is short on purpose;
    the warning would otherwise repeat on every request and job.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        yield


def token_from_request(request: web.Request) -> str | None:
    """The bearer token of ``request`` (header first, then ``access_token`` query), or None."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "invalid authorization header. Must start with Bearer ")
        return token.strip()
    return request.query.get("access_token") or None


def verify_token(token: str, keys: dict[str, str]) -> Claims:
    """Verify ``token`` against the API key named by its issuer; AuthError(401) when it does not verify."""
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss", "")
    except jwt.PyJWTError as exc:
        raise AuthError(401, f"invalid token: {exc}") from exc
    secret = keys.get(issuer) if isinstance(issuer, str) else None
    if secret is None:
        raise AuthError(401, "invalid API key")
    try:
        with quiet_short_secrets():
            return TokenVerifier(issuer, secret).verify(token)
    except jwt.ExpiredSignatureError as exc:
        raise AuthError(401, "token is expired") from exc
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        # TypeError/ValueError: a signed token whose grants do not have the expected shape.
        raise AuthError(401, f"invalid token: {exc}") from exc


def verify_request(request: web.Request, keys: dict[str, str]) -> Claims:
    """The verified claims of ``request``'s access token; AuthError(401) when absent or invalid."""
    token = token_from_request(request)
    if token is None:
        raise AuthError(401, "no authorization token provided")
    return verify_token(token, keys)


def _video(claims: Claims) -> VideoGrants:
    return claims.video or VideoGrants()


def require_room_create(claims: Claims) -> None:
    """CreateRoom and DeleteRoom need ``roomCreate``."""
    if not _video(claims).room_create:
        raise AuthError(401, "permissions denied")


def require_room_list(claims: Claims) -> None:
    """ListRooms needs ``roomList``."""
    if not _video(claims).room_list:
        raise AuthError(401, "permissions denied")


def require_room_admin(claims: Claims, room: str) -> None:
    """Participant operations, SendData and dispatch need ``roomAdmin`` with the grant naming exactly
    ``room``."""
    video = _video(claims)
    if not video.room_admin or video.room != room:
        raise AuthError(401, "permissions denied")


def require_agent(claims: Claims) -> None:
    """Registering as an agent worker needs the ``agent`` video grant."""
    if not _video(claims).agent:
        raise AuthError(401, "permissions denied")
