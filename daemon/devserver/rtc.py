"""WebRTC termination for the loopback dev server with aiortc (runs in the dev server process).

A real LiveKit server forwards RTP packets untouched (an SFU). This dev server decodes what a publisher
sends and re-encodes it for every subscriber, because aiortc exposes decoded frames through a public API
and forwarding raw RTP would mean rewriting its sender and receiver. That costs CPU per subscriber; it is
acceptable for tests, the demo and local development, and is the reason the dev server is not an SFU.

aiortc needs three changes to talk to libwebrtc the way the LiveKit SDK uses it (probed, see DESIGN.md):

- Incoming RTP is routed by the MID header extension first. Simulcast offers carry no SSRC lines, so two
  videos from one publisher share payload types and aiortc's SSRC/payload-type routing drops both.
- The RID header-extension lines of the offer are copied into every video m-line of the answer, else
  libwebrtc refuses to publish a simulcast track ("does not negotiate the RID RTP header extension").
  aiortc answers without `a=simulcast`, so libwebrtc then sends one layer.
- Peer connections use bundlePolicy MAX_BUNDLE (aiortc's default strands extra m-lines silently).

Resolution (probed on this machine, 720p published with and without simulcast): with aiortc's answer as
it is, libwebrtc sends 640x360 and climbs to 960x540 only after ~14 s; the server already receives the
smaller size, so the cause is the publisher's encoder, not the re-encoding. Two causes, each measured
alone: libwebrtc starts at its default 300 kbps and downscales 720p before the first frame (an answer
with `x-google-start-bitrate` alone gives 1280x720 from the first frames); and aiortc's receiver sends
REMB (goog-remb + abs-send-time; it has no transport-cc) bound to ~1.5x the incoming rate, which for the
tests' flat pattern was 36 kbps growing ~8 %/s, so with the start bitrate alone libwebrtc keeps the size
but drops frames, and with REMB removed alone it stays at 640x360. The answer for video the server
receives therefore drops goog-remb and abs-send-time (libwebrtc falls back to its loss-based estimate,
which sees no loss on one machine) and sets `x-google-start-bitrate` for every video codec: 1280x720 at
full frame rate from the first frames. Downstream m-lines keep REMB, so aiortc's encoders still follow
the subscriber's estimate. libwebrtc's CPU adaptation can still lower the size when this 2-core machine
is overloaded (960x540 or 640x360 seen at load average 6-8 with the default degradation preference);
a publisher that must keep its size asks for DegradationPreference.MAINTAIN_RESOLUTION.

The first change patches aiortc internals, so `check_aiortc()` verifies them at start-up and refuses to
run with a clear message when they moved. ICE: libwebrtc gathers no candidates on a loopback-only
interface, so aiortc offers host candidates on the machine's non-loopback IPv4 interfaces
(`ice_host_addresses`); no STUN or TURN is used, which keeps the dev server on one machine.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aioice.ice
import aiortc
import aiortc.rtcdtlstransport
import aiortc.rtp
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.rtcconfiguration import RTCBundlePolicy

SUPPORTED_AIORTC = "1.16."
FRAME_QUEUE_DEPTH = 4
RID_EXTENSION_RE = re.compile(
    r"^a=extmap:\d+(/\w+)? urn:ietf:params:rtp-hdrext:sdes:(repaired-)?rtp-stream-id$"
)
REMB_LINE_RE = re.compile(r"^a=(rtcp-fb:\d+ goog-remb|extmap:\d+(/\w+)? \S*abs-send-time)$")
RTPMAP_RE = re.compile(r"^a=rtpmap:(\d+) ([\w-]+)/")
START_BITRATE_CODECS = frozenset({"VP8", "VP9", "H264", "AV1"})
# Enough for libwebrtc to start a 1080p layer at full size; its loss-based estimate takes over from there.
START_BITRATE_KBPS = 3000


class AiortcIncompatible(RuntimeError):
    """aiortc's internals are not the ones the dev server's workarounds were written against."""


def check_aiortc() -> None:
    """Verify the aiortc internals the workarounds touch; raise AiortcIncompatible with the reason."""
    if not aiortc.__version__.startswith(SUPPORTED_AIORTC):
        raise AiortcIncompatible(
            f"the dev server needs aiortc {SUPPORTED_AIORTC}x, found {aiortc.__version__}"
        )
    router = aiortc.rtcdtlstransport.RtpRouter()
    for attribute in ("mid_table", "ssrc_table", "payload_type_table", "route_rtp"):
        if not hasattr(router, attribute):
            raise AiortcIncompatible(f"aiortc RtpRouter has no {attribute!r}: MID routing cannot be patched")
    if "mid" not in aiortc.rtp.HeaderExtensions.__dataclass_fields__:
        raise AiortcIncompatible("aiortc RTP header extensions no longer expose 'mid'")
    if not callable(getattr(aioice.ice, "get_host_addresses", None)):
        raise AiortcIncompatible("aioice.ice.get_host_addresses is gone: ICE addresses cannot be chosen")


_original_route_rtp = aiortc.rtcdtlstransport.RtpRouter.route_rtp
_original_get_host_addresses = aioice.ice.get_host_addresses


def _route_rtp_by_mid(self: Any, packet: Any) -> Any:
    """Route by the MID header extension before SSRC and payload type (RFC 8843 section 9.2)."""
    mid = packet.extensions.mid
    if mid is not None:
        receiver = self.mid_table.get(mid)
        if receiver is not None:
            self.ssrc_table[packet.ssrc] = receiver
            return receiver
    return _original_route_rtp(self, packet)


def ice_host_addresses() -> list[str]:
    """The addresses aiortc offers as host candidates: every non-loopback IPv4 address of this machine."""
    return [
        address
        for address in _original_get_host_addresses(use_ipv4=True, use_ipv6=False)
        if not address.startswith("127.")
    ]


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    del use_ipv4, use_ipv6
    return ice_host_addresses()


def install_workarounds() -> None:
    """Check aiortc, then route RTP by MID and restrict ICE to non-loopback IPv4; idempotent."""
    check_aiortc()
    if not ice_host_addresses():
        raise AiortcIncompatible("no non-loopback IPv4 interface: libwebrtc cannot reach the dev server")
    aiortc.rtcdtlstransport.RtpRouter.route_rtp = _route_rtp_by_mid  # type: ignore[method-assign]
    aioice.ice.get_host_addresses = _host_addresses


def new_peer_connection() -> RTCPeerConnection:
    """A peer connection that bundles every m-line on one transport, as libwebrtc does."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


def _simulcast_rids(offer_sdp: str) -> dict[str, list[str]]:
    """The send RIDs of every simulcast m-line of an offer, by mid."""
    rids: dict[str, list[str]] = {}
    mid = ""
    for line in offer_sdp.splitlines():
        if line.startswith("m="):
            mid = ""
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.startswith("a=rid:") and line.rstrip().endswith(" send"):
            rids.setdefault(mid, []).append(line[6:].split()[0])
    return rids


def munge_answer(offer_sdp: str, answer_sdp: str) -> str:
    """Make aiortc's answer acceptable to a libwebrtc publisher and let it send full resolution at once.

    Every video m-line gets the offer's RID header-extension lines; an m-line the client offered as
    simulcast is answered `a=simulcast:recv <top>` so libwebrtc sends exactly one (full-size) layer.
    Video is answered without REMB feedback and with a start bitrate (see the module docstring).
    """
    rid_lines: list[str] = []
    for line in offer_sdp.splitlines():
        if RID_EXTENSION_RE.match(line) and line not in rid_lines:
            rid_lines.append(line)
    simulcast = _simulcast_rids(offer_sdp)
    out: list[str] = []
    for section in _sections(answer_sdp):
        video = bool(section) and section[0].startswith("m=video")
        receiving_video = video and "a=recvonly" in section
        lines: list[str] = []
        for line in section:
            if receiving_video and REMB_LINE_RE.match(line):
                continue
            lines.append(line)
            if video and line.startswith("a=mid:"):
                lines.extend(rid_lines)
                rids = simulcast.get(line[6:].strip())
                if rids:
                    top = "f" if "f" in rids else rids[-1]
                    lines.extend([f"a=rid:{top} recv", f"a=simulcast:recv {top}"])
        out.extend(_with_start_bitrate(lines) if video else lines)
    return "\r\n".join(out) + "\r\n"


def _sections(sdp: str) -> list[list[str]]:
    """The session part and every m-section of an SDP, as lists of lines."""
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def _with_start_bitrate(section: list[str]) -> list[str]:
    """Add x-google-start-bitrate to the fmtp of every video codec (not rtx/red/ulpfec) of one m-section."""
    codecs = {
        m.group(1) for m in map(RTPMAP_RE.match, section) if m and m.group(2).upper() in START_BITRATE_CODECS
    }
    with_fmtp = {line[7:].split(" ", 1)[0] for line in section if line.startswith("a=fmtp:")}
    parameter = f"x-google-start-bitrate={START_BITRATE_KBPS}"
    out: list[str] = []
    for line in section:
        payload_type = line[7:].split(" ", 1)[0] if line.startswith("a=fmtp:") else None
        out.append(f"{line};{parameter}" if payload_type in codecs else line)
        match = RTPMAP_RE.match(line)
        if match and match.group(1) in codecs and match.group(1) not in with_fmtp:
            out.append(f"a=fmtp:{match.group(1)} {parameter}")
    return out


def media_sections(sdp: str) -> list[tuple[str, str, str, str | None]]:
    """(kind, mid, direction, msid track id) of every audio/video m-line of an SDP."""
    sections: list[tuple[str, str, str, str | None]] = []
    kind = ""
    mid = ""
    direction = "sendrecv"
    track_id: str | None = None
    for line in [*sdp.splitlines(), "m=end"]:
        if line.startswith("m="):
            if kind in ("audio", "video"):
                sections.append((kind, mid, direction, track_id))
            kind = line[2:].split(" ", 1)[0]
            mid, direction, track_id = "", "sendrecv", None
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.strip() in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            direction = line.strip()[2:]
        elif line.startswith("a=msid:"):
            parts = line[7:].split()
            if len(parts) == 2:
                track_id = parts[1]
    return sections


class FrameRelay:
    """Fans one received track's frames out to any number of subscriber proxies (latest frames win).

    Subscribers may attach before the publisher's media arrives: the pump starts with `start(source)`.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.proxies: set[ProxyTrack] = set()
        self.frames = 0
        self._pump: asyncio.Task[None] | None = None

    def start(self, source: MediaStreamTrack) -> None:
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._run(source))

    async def _run(self, source: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await source.recv()
                self.frames += 1
                for proxy in self.proxies:
                    proxy.push(frame)
        except aiortc.mediastreams.MediaStreamError:
            pass
        finally:
            for proxy in list(self.proxies):
                proxy.stop()

    def stop(self) -> None:
        """End every subscriber proxy and the pump (the publisher unpublished or left)."""
        if self._pump is not None:
            self._pump.cancel()
        for proxy in list(self.proxies):
            proxy.stop()


class ProxyTrack(MediaStreamTrack):
    """The track behind one subscriber m-line: frames pushed by a FrameRelay, oldest dropped when late."""

    def __init__(self, kind: str, relay: FrameRelay | None = None) -> None:
        super().__init__()
        self.kind = kind
        self._frames: asyncio.Queue[Any] = asyncio.Queue(FRAME_QUEUE_DEPTH)
        self._relay: FrameRelay | None = None
        self.dropped = 0
        if relay is not None:
            self.attach(relay)

    def attach(self, relay: FrameRelay) -> None:
        """Switch the source this m-line carries (frames from the previous one stop)."""
        self.detach()
        self._relay = relay
        relay.proxies.add(self)

    def detach(self) -> None:
        if self._relay is not None:
            self._relay.proxies.discard(self)
            self._relay = None

    def push(self, frame: Any) -> None:
        if self._frames.full():
            self._frames.get_nowait()
            self.dropped += 1
        self._frames.put_nowait(frame)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise aiortc.mediastreams.MediaStreamError
        frame = await self._frames.get()
        if frame is None:
            raise aiortc.mediastreams.MediaStreamError
        return frame

    def stop(self) -> None:
        self.detach()
        if self.readyState == "live":
            super().stop()
            if self._frames.full():
                self._frames.get_nowait()
            self._frames.put_nowait(None)
