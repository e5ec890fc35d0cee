"""framepool: a LiveKit agent server whose supervisor holds the rooms and whose CPU-pinned workers process frames from shared-memory rings."""

__version__ = "0.1.0"
