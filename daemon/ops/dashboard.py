"""The status page at /dashboard: one self-contained HTML file, package data, that polls /status (supervisor
process, on the ops server's loop).

The page is read once. Its Content-Security-Policy admits its own inline script and style by their SHA-256,
computed here from the file itself so an edit to the page can never leave a stale hash behind, and lets the
page talk to its own origin only: a room name crafted to inject markup would find no script allowed to run
and no host to send anything to. A nonce would do the same but change the body per request, defeating the
ETag that lets a browser revalidate the page instead of downloading it again.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

PAGE = "dashboard.html"
INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


@dataclass(frozen=True)
class DashboardPage:
    """The page's bytes and the headers that go with them."""

    body: bytes
    etag: str
    content_security_policy: str


def inline_hashes(html: str, tag: str) -> list[str]:
    """CSP source expressions ('sha256-…') of the contents of every bare <tag> element of `html`."""
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"
        for found_tag, text in INLINE.findall(html)
        if found_tag == tag
    ]


@functools.cache
def dashboard_page() -> DashboardPage:
    """The page as packaged, read on first use."""
    body = resources.files(__package__).joinpath(PAGE).read_bytes()
    html = body.decode()
    policy = "; ".join(
        (
            "default-src 'none'",
            "connect-src 'self'",  # the polls of /status
            f"script-src {' '.join(inline_hashes(html, 'script'))}",
            f"style-src {' '.join(inline_hashes(html, 'style'))}",
            "img-src data:",  # the empty favicon, so the browser asks for no /favicon.ico
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    return DashboardPage(body=body, etag=etag, content_security_policy=policy)


async def serve_dashboard(request: web.Request) -> web.Response:
    """GET /dashboard: the page, or 304 when the browser's copy (If-None-Match) is this one."""
    page = dashboard_page()
    headers = {
        "Content-Security-Policy": page.content_security_policy,
        # Revalidate every time: an upgraded daemon serves a new page under the same URL.
        "Cache-Control": "no-cache",
        "ETag": page.etag,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if page.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=page.body, content_type="text/html", charset="utf-8", headers=headers)
