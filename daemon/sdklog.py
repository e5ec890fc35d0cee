"""The livekit SDK's known benign lifecycle messages, demoted so that ERROR and WARNING mean trouble (both
processes install it with `setup_logging`; only the supervisor has the SDK, the worker's filter never fires).

The SDK logs the normal end of a room connection and its reconnects at WARNING or ERROR (its Rust core's
records reach the `livekit` logger as `target:line:module - message`). An operator alerting on errors would
be paged at every job end. Each entry below is a message seen during a normal job end or reconnect in the
integration tests (run them with `-o log_cli=true -o log_cli_level=WARNING` to find new ones after an SDK
upgrade), matched by a regular expression on the formatted message, with the level it gets instead.

Why a filter on the SDK's loggers rather than on our handler: records are demoted before any handler sees
them, pytest's capture and an embedding application's handlers included, and a demoted record below the
logger's level is dropped exactly as if the SDK had logged it at that level.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BenignMessage:
    logger: str  # the SDK logger that emits it
    pattern: re.Pattern[str]  # searched in the formatted message
    level: int  # what it is logged at instead
    why: str  # when it happens, and why it is not a fault


BENIGN: tuple[BenignMessage, ...] = (
    # Connecting.
    BenignMessage(
        "livekit",
        re.compile(
            r"livekit_signaling - (v1 path not found \(404\), falling back to v0 path|"
            r"signal connection failed on v1 path: Handshake \{ status: 404 \})"
        ),
        logging.DEBUG,
        "joining a server without the single-peer-connection path (/rtc/v1): the SDK falls back to /rtc",
    ),
    # Job end.
    BenignMessage(
        "livekit",
        re.compile(r"peer_transport - peer connection is closed, cannot create offer"),
        logging.DEBUG,
        "job end: a renegotiation queued before Room.disconnect() runs after the peer connection closed",
    ),
    BenignMessage(
        "livekit",
        re.compile(r"rtc_session - publisher data channel '_[a-z_]+' closed unexpectedly$"),
        logging.INFO,
        "job end: the server closes the room (deleted, job terminated) and with it the data channels; a "
        "channel lost mid-job ends in a reconnect or a disconnect, which are logged on their own",
    ),
    BenignMessage(
        "livekit",
        re.compile(r"room_apis::server - Attempted to drop unknown FFI handle"),
        logging.DEBUG,
        "job end: a handle released twice, once by the room's own teardown",
    ),
    # Reconnects: the SDK resumes the room itself, and says so at ERROR at every attempt. A reconnect that
    # fails for good is a disconnect, which the job reports itself.
    BenignMessage(
        "livekit",
        re.compile(r"rtc_engine - received session close: .* Resume$"),
        logging.INFO,
        "reconnect: the signal connection dropped and the SDK is about to resume the session",
    ),
    BenignMessage(
        "livekit",
        re.compile(r"rtc_engine - (resuming|restarting) connection\.\.\. attempt: \d+$"),
        logging.INFO,
        "reconnect: one attempt to resume the session or, after that failed, to rejoin the room",
    ),
    BenignMessage(
        "livekit",
        re.compile(r"rtc_engine - resuming connection failed: "),
        logging.WARNING,
        "reconnect: resuming failed (the server lost the session), the SDK rejoins the room next",
    ),
    BenignMessage(
        "livekit",
        re.compile(r"livekit_signaling - dropping pass-through signal: no confirmed transport"),
        logging.DEBUG,
        "reconnect: a signal message sent before the new transport is confirmed; the SDK resends its state",
    ),
)


class DemoteBenign(logging.Filter):
    """Lowers the level of the records `BENIGN` lists for this filter's logger; drops them when the logger
    would not have logged them at that level."""

    def __init__(self, logger: logging.Logger, entries: tuple[BenignMessage, ...]) -> None:
        super().__init__()
        self._logger = logger
        self._entries = entries

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.INFO:
            return True
        message = record.getMessage()
        for entry in self._entries:
            if entry.level < record.levelno and entry.pattern.search(message):
                record.levelno, record.levelname = entry.level, logging.getLevelName(entry.level)
                record.benign = entry.why
                return self._logger.isEnabledFor(entry.level)
        return True


def install() -> None:
    """Add the filter to every logger `BENIGN` names (once per logger; calling again is harmless)."""
    for name in sorted({entry.logger for entry in BENIGN}):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DemoteBenign) for f in logger.filters):
            logger.addFilter(DemoteBenign(logger, tuple(e for e in BENIGN if e.logger == name)))
