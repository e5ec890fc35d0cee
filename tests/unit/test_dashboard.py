"""The status page as packaged (framepool.ops.dashboard): self-contained, so it works offline and leaks
nothing to another host; its Content-Security-Policy admits exactly its own inline script and style; user
strings never reach an HTML parser. In a browser: tests/process/test_dashboard_page.py."""

from __future__ import annotations

import base64
import hashlib
import re

from aiohttp.test_utils import make_mocked_request

from framepool.ops.dashboard import dashboard_page, inline_hashes, serve_dashboard

HTML = dashboard_page().body.decode()


def test_the_page_names_no_other_host() -> None:
    assert re.findall(r"[a-z][a-z0-9+.-]*://", HTML, re.IGNORECASE) == []
    assert re.findall(r"""["'(]\s*//""", HTML) == []  # protocol-relative URLs
    assert re.findall(r"@import|url\(", HTML) == []
    # Every attribute that loads something: the inline empty favicon only.
    assert re.findall(r"""\b(?:src|href|action|srcset)\s*=\s*["']?([^"'\s>]*)""", HTML) == ["data:,"]


def test_the_page_fetches_only_status_relative_to_itself() -> None:
    assert re.findall(r"fetch\(([^,)]*)", HTML) == ['"status"']
    assert "XMLHttpRequest" not in HTML and "WebSocket" not in HTML and "EventSource" not in HTML


def test_no_string_reaches_an_html_parser() -> None:
    """Room and participant names come from users: text nodes only (textContent, append of strings)."""
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(",
                 "setAttribute", "srcdoc", "DOMParser", "createContextualFragment"):  # fmt: skip
        assert sink not in HTML, sink


def test_one_inline_script_and_one_inline_style_and_nothing_loaded() -> None:
    assert len(re.findall(r"<script\b", HTML)) == 1 and len(re.findall(r"<style\b", HTML)) == 1
    assert " style=" not in HTML  # an inline style attribute would need 'unsafe-inline'
    assert not re.search(r"\son[a-z]+\s*=", HTML)  # nor would an inline event handler run


def test_the_policy_admits_the_hashes_of_the_page_and_nothing_else() -> None:
    policy = dict(d.strip().split(" ", 1) for d in dashboard_page().content_security_policy.split(";"))
    [script] = re.findall(r"<script>(.*?)</script>", HTML, re.DOTALL)
    [style] = re.findall(r"<style>(.*?)</style>", HTML, re.DOTALL)

    def source(text: str) -> str:
        return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"

    assert policy == {
        "default-src": "'none'",
        "connect-src": "'self'",
        "script-src": source(script),
        "style-src": source(style),
        "img-src": "data:",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }
    assert inline_hashes("<script>a</script><style>b</style><script>c</script>", "script") == [
        source("a"),
        source("c"),
    ]


async def test_the_response_carries_the_policy_and_revalidates() -> None:
    page = dashboard_page()
    first = await serve_dashboard(make_mocked_request("GET", "/dashboard"))
    assert first.status == 200 and first.body == page.body
    assert first.content_type == "text/html" and first.charset == "utf-8"
    assert first.headers["Content-Security-Policy"] == page.content_security_policy
    assert first.headers["Cache-Control"] == "no-cache" and first.headers["ETag"] == page.etag
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    again = await serve_dashboard(
        make_mocked_request("GET", "/dashboard", headers={"If-None-Match": page.etag})
    )
    assert again.status == 304 and again.body is None
    stale = await serve_dashboard(make_mocked_request("GET", "/dashboard", headers={"If-None-Match": '"x"'}))
    assert stale.status == 200
