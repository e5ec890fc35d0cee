"""The SDK's benign lifecycle messages are demoted, its real failures are not (test process; records made the
way the SDK's FFI client makes them: `target:line:module - message` on the `livekit` logger)."""

from __future__ import annotations

import io
import logging

import pytest

from framepool import sdklog
from framepool.logs import setup_logging

# As the integration tests saw them (livekit 1.x), at the level the SDK used.
BENIGN_SEEN = [
    (
        logging.WARNING,
        "livekit_signaling:601:livekit_signaling - v1 path not found (404), falling back to v0 path",
    ),
    (
        logging.WARNING,
        "livekit_signaling:583:livekit_signaling - signal connection failed on v1 path: Handshake { status: 404 }",  # noqa: E501 (the SDK's line, verbatim)
    ),
    (
        logging.WARNING,
        "livekit::rtc_engine::peer_transport:578:livekit::rtc_engine::peer_transport - peer connection is closed, cannot create offer",  # noqa: E501 (the SDK's line, verbatim)
    ),
    (
        logging.ERROR,
        "livekit::rtc_engine::rtc_session:739:livekit::rtc_engine::rtc_session - publisher data channel '_reliable' closed unexpectedly",  # noqa: E501 (the SDK's line, verbatim)
    ),
    (
        logging.WARNING,
        "livekit_ffi::room_apis::server:279:livekit_ffi::room_apis::server - Attempted to drop unknown FFI handle: 9293",  # noqa: E501 (the SDK's line, verbatim)
    ),
    (
        logging.WARNING,
        'livekit::rtc_engine:643:livekit::rtc_engine - received session close: "signal client closed: \\"stream closed\\"" UnknownReason Resume',  # noqa: E501 (the SDK's line, verbatim)
    ),
    (logging.ERROR, "livekit::rtc_engine:1041:livekit::rtc_engine - resuming connection... attempt: 1"),
    (logging.ERROR, "livekit::rtc_engine:995:livekit::rtc_engine - restarting connection... attempt: 2"),
    (
        logging.WARNING,
        "livekit_signaling:790:livekit_signaling - dropping pass-through signal: no confirmed transport",
    ),
]
REAL_FAILURES = [
    (
        logging.WARNING,
        "livekit_signaling:583:livekit_signaling - signal connection failed on v1 path: Handshake { status: 500 }",  # noqa: E501 (the SDK's line, verbatim)
    ),
    (
        logging.ERROR,
        "livekit_signaling:367:livekit_signaling - unexpected signal error: handshake error: 500 Internal Server Error",  # noqa: E501 (the SDK's line, verbatim)
    ),
    (
        logging.WARNING,
        "livekit::rtc_engine:559:livekit::rtc_engine - authentication rejected during connect (signal failure: client error: 401 Unauthorized - token is expired); not retrying",  # noqa: E501 (the SDK's line, verbatim)
    ),
    (
        logging.ERROR,
        "livekit_ffi::room_apis::server::room:355:livekit_ffi::room_apis::server::room - error while connecting to a room: engine: signal failure: handshake error: 500 Internal Server Error",  # noqa: E501 (the SDK's line, verbatim)
    ),
]


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    sdklog.install()
    caplog.set_level(logging.DEBUG, logger="livekit")
    return caplog


def _log(level: int, message: str) -> None:
    target, line, rest = message.split(":", 2)
    module, _, text = rest.partition(" - ")
    logging.getLogger("livekit").log(level, "%s:%s:%s - %s", target, line, module, text)


@pytest.mark.parametrize(("level", "message"), BENIGN_SEEN)
def test_benign_sdk_messages_are_demoted_below_warning(
    captured: pytest.LogCaptureFixture, level: int, message: str
) -> None:
    _log(level, message)
    [record] = captured.records
    assert record.levelno <= logging.INFO and record.benign  # type: ignore[attr-defined]


def test_a_failed_resume_is_a_warning_not_an_error(captured: pytest.LogCaptureFixture) -> None:
    _log(
        logging.ERROR,
        "livekit::rtc_engine:1068:livekit::rtc_engine - resuming connection failed: signal failure: server sent leave during reconnect: reason=StateMismatch, action=Reconnect",  # noqa: E501 (the SDK's line, verbatim)
    )
    assert [r.levelno for r in captured.records] == [logging.WARNING]


@pytest.mark.parametrize(("level", "message"), REAL_FAILURES)
def test_real_sdk_failures_keep_their_level(
    captured: pytest.LogCaptureFixture, level: int, message: str
) -> None:
    _log(level, message)
    assert [r.levelno for r in captured.records] == [level]


def test_demoted_records_below_the_logger_level_are_dropped_and_setup_installs_the_filter() -> None:
    stream = io.StringIO()
    livekit = logging.getLogger("livekit")
    before = (
        livekit.level,
        list(livekit.filters),
        list(logging.getLogger().handlers),
        logging.getLogger().level,
    )
    for old in list(livekit.filters):
        livekit.removeFilter(old)
    try:
        setup_logging("info", "text", stream)  # the SDK's logger at WARNING, as in production
        assert any(isinstance(f, sdklog.DemoteBenign) for f in livekit.filters)
        _log(*BENIGN_SEEN[2])
        _log(*REAL_FAILURES[1])
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1 and "ERROR" in lines[0] and "unexpected signal error" in lines[0]
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in before[2]:
            root.addHandler(handler)
        root.setLevel(before[3])
        livekit.setLevel(before[0])
        for old in list(livekit.filters):
            livekit.removeFilter(old)
        for kept in before[1]:
            livekit.addFilter(kept)
