"""Placeholder being replaced by the CONTROL engineer right now: registers no routes yet (runs in the dev server process)."""

from typing import Any

from aiohttp import web


def setup(app: web.Application, server: Any) -> None:
    """Add this module's routes to the dev server's application."""
    del app, server
