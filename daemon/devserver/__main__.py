"""`python -m framepool.devserver`: run the loopback LiveKit dev server (runs in the dev server process)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from framepool.devserver.server import run_devserver


def parse_keys(text: str) -> dict[str, str]:
    """`key:secret[,key2:secret2]` as a dict; argparse reports a bad value in one line."""
    keys: dict[str, str] = {}
    for pair in text.split(","):
        key, sep, secret = pair.partition(":")
        if not sep or not key or not secret:
            raise argparse.ArgumentTypeError(f"expected key:secret, got {pair!r}")
        keys[key] = secret
    return keys


class _OneLineErrors(argparse.ArgumentParser):
    """Bad arguments are one line on stderr (exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineErrors(
        prog="python -m framepool.devserver",
        description="Loopback LiveKit dev server (tests and development only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="HTTP/websocket bind address (default loopback)")
    parser.add_argument("--port", type=int, default=7880)
    parser.add_argument(
        "--keys", type=parse_keys, default={"devkey": "secret"}, help="key:secret[,key:secret]"
    )
    parser.add_argument(
        "--departure-timeout",
        type=float,
        default=20.0,
        help="seconds a room stays open after its last participant left",
    )
    parser.add_argument("--verbose", action="store_true", help="log every signal message")
    args = parser.parse_args(argv)
    return run_devserver(args.host, args.port, args.keys, args.verbose, args.departure_timeout)


if __name__ == "__main__":
    sys.exit(main())
