"""`framepool health`: exit 0 when the daemon's /livez answers 200, else 1 with one line saying why
(the command's own short-lived process, not the supervisor: a container's HEALTHCHECK or an operator runs it).

Slim images have no curl, and Docker reads a health check's exit status: 0 healthy, 1 unhealthy (2 is
reserved), so every failure here, unreadable settings included, is 1. The default URL is the daemon's own
/livez from the same settings (`http_host`, `http_port`: flags, FRAMEPOOL_* environment, --config), with a
wildcard host asked on loopback. The standard library's HTTP client keeps the probe's start-up short.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from typing import Any

from framepool.errors import ExitStatus, FramepoolError
from framepool.settings import Settings

WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
MAX_LINE = 300  # characters of a 503 body repeated on stderr


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    sub = subparsers.add_parser(
        "health",
        parents=[common],
        usage="framepool health [--url URL] [--timeout SECONDS] [SETTINGS FLAGS]",
        help="Exit 0 if the daemon's /livez answers 200, else 1 (for a container HEALTHCHECK).",
    )
    sub.add_argument("--url", default=None, help="URL to probe (default: /livez on http_host:http_port).")
    sub.add_argument("--timeout", type=float, default=2.0, help="Seconds to wait for the answer.")
    sub.set_defaults(handler=run_health, needs_settings=False)


def run_health(args: argparse.Namespace, settings: Settings | None) -> int:
    url = args.url
    if url is None:
        from framepool.cli import load_settings

        try:
            settings = load_settings(args)
        except FramepoolError as exc:
            return _unhealthy(f"cannot read the settings: {exc}")
        if not settings.http_port:
            return _unhealthy("the health endpoints are disabled (http_port = 0); pass --url")
        url = livez_url(settings)
    healthy, line = probe(url, args.timeout)
    if not healthy:
        return _unhealthy(line)
    print(line)
    return ExitStatus.OK


def _unhealthy(line: str) -> int:
    print(f"framepool health: {line}", file=sys.stderr)
    return ExitStatus.FAILURE


def livez_url(settings: Settings) -> str:
    """The daemon's /livez as these settings place it; a wildcard listening address is asked on loopback."""
    host = WILDCARD_HOSTS.get(settings.http_host, settings.http_host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.http_port}/livez"


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """(True, the body's first line) for a 200; else (False, what went wrong in one line)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy
    try:
        with opener.open(url, timeout=timeout) as response:
            return True, _first_line(response.read())
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered {exc.code}: {_first_line(exc.read())}"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return False, f"{url} did not answer within {timeout:g} s"
        return False, f"cannot reach {url}: {getattr(reason, 'strerror', None) or reason}"
    except TimeoutError:  # while reading the answer
        return False, f"{url} did not answer within {timeout:g} s"
    except OSError as exc:  # a reset connection
        return False, f"{url}: {exc.strerror or exc}"
    except ValueError as exc:  # not a URL
        return False, f"bad URL {url!r}: {exc}"


def _first_line(body: bytes) -> str:
    lines = body.decode(errors="replace").strip().splitlines()
    return lines[0][:MAX_LINE] if lines else "(empty answer)"
