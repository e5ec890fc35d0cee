"""The dev server's answer munging (framepool.devserver.rtc.munge_answer) on SDP shaped like
libwebrtc/aiortc's."""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc", reason="the dev server (framepool.devserver.rtc) needs the devserver extra")

from framepool.devserver.rtc import START_BITRATE_KBPS, media_sections, munge_answer

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:0",
        "a=sendonly",
        "a=msid:- cam-cid",
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "a=rid:q send",
        "a=rid:h send",
        "a=rid:f send",
        "a=simulcast:send q;h;f",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        "a=recvonly",
        "",
    ]
)

ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 3 3 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:0",
        "a=recvonly",
        "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 goog-remb",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        "a=sendonly",
        "a=msid:PA_x|TR_y TR_y.1",
        "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=fmtp:96 max-fr=30",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "",
    ]
)


def _section(sdp: str, mid: str) -> list[str]:
    sections = sdp.split("\r\nm=")
    return next(s.split("\r\n") for s in sections[1:] if f"a=mid:{mid}" in s)


def test_received_video_has_rid_extensions_top_layer_start_bitrate_and_no_remb() -> None:
    received = _section(munge_answer(OFFER, ANSWER), "0")
    assert "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" in received
    assert [line for line in received if "rid:f" in line or "simulcast" in line] == [
        "a=rid:f recv",
        "a=simulcast:recv f",
    ]
    assert not [line for line in received if "goog-remb" in line or "abs-send-time" in line]
    assert f"a=fmtp:96 x-google-start-bitrate={START_BITRATE_KBPS}" in received
    assert "a=fmtp:97 apt=96" in received  # rtx keeps its parameters untouched


def test_sent_video_keeps_remb_and_gains_start_bitrate_on_its_existing_fmtp() -> None:
    sent = _section(munge_answer(OFFER, ANSWER), "1")
    assert "a=rtcp-fb:96 goog-remb" in sent and any("abs-send-time" in line for line in sent)
    assert f"a=fmtp:96 max-fr=30;x-google-start-bitrate={START_BITRATE_KBPS}" in sent
    assert [s[:3] for s in media_sections(munge_answer(OFFER, ANSWER))] == [
        ("video", "0", "recvonly"),
        ("video", "1", "sendonly"),
    ]
