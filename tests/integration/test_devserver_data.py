"""The dev server's data plane with the real livekit SDK: every packet kind relayed with the right sender,
topic, kind and destinations, and each client's protocol level passed on so the SDK uses RPC v2 and
inline, compressed data streams as it would against LiveKit (one dev server for the module)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from livekit import api, rtc
from livekit.protocol import models

from framepool.devserver.server import DevServer
from tests.support.datatap import DataTap
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.sdk import joined, next_event
from tests.support.timeouts import EVENT

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

V1_PAYLOAD_LIMIT = 15360  # the SDK's RPC v1 request limit (bytes)


@dataclass
class Server:
    devserver: DevServer
    tap: DataTap


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[Server]:
    devserver = DevServer(port=0, keys={API_KEY: API_SECRET}, departure_timeout=0.5)
    await devserver.start()
    try:
        yield Server(devserver, DataTap(devserver))
    finally:
        await devserver.aclose()


def queue_of(room: rtc.Room, event: str) -> asyncio.Queue[object]:
    queue: asyncio.Queue[object] = asyncio.Queue()
    room.on(event, queue.put_nowait)
    return queue


async def got(queue: asyncio.Queue[object]) -> object:
    return await asyncio.wait_for(queue.get(), EVENT)


@pytest.mark.parametrize("single_pc", [True, False], ids=["single_pc", "classic"])
async def test_each_client_protocol_and_capabilities_reach_the_others(
    server: Server, room_name: str, single_pc: bool
) -> None:
    options = rtc.RoomOptions(single_peer_connection=single_pc)
    async with (
        joined(server.devserver, "alice", room_name, options) as alice,
        joined(server.devserver, "bob", room_name, options),
    ):
        bob_seen = alice.remote_participants["bob"]
        # The SDK 1.2.1 advertises client_protocol 2 (RPC v2 and inline data streams) and deflate-raw.
        assert bob_seen._info.client_protocol == 2
        info = server.devserver.rooms.get(room_name).participants["bob"].to_proto()  # type: ignore[union-attr]
        assert info.client_protocol == 2
        assert models.ClientInfo.Capability.CAP_COMPRESSION_DEFLATE_RAW in info.capabilities


async def test_packets_keep_sender_topic_kind_and_destinations(server: Server, room_name: str) -> None:
    async with (
        joined(server.devserver, "alice", room_name) as alice,
        joined(server.devserver, "bob", room_name) as bob,
        joined(server.devserver, "carol", room_name) as carol,
    ):
        bob_got, carol_got = queue_of(bob, "data_received"), queue_of(carol, "data_received")
        send = alice.local_participant.publish_data
        await send(b"all", reliable=True, topic="news")
        await send(b"for-carol", reliable=True, topic="dm", destination_identities=["carol"])
        await send(b"marker", reliable=True, topic="news")
        seen = {"bob": [], "carol": []}
        for name, queue, count in (("bob", bob_got, 2), ("carol", carol_got, 3)):
            for _ in range(count):
                packet = await got(queue)
                assert isinstance(packet, rtc.DataPacket) and packet.participant is not None
                assert (packet.participant.identity, packet.kind) == (
                    "alice",
                    rtc.DataPacketKind.KIND_RELIABLE,
                )
                seen[name].append((packet.data, packet.topic))
        # Reliable packets of one sender stay in order: bob's next packet after "all" is the marker.
        assert seen["bob"] == [(b"all", "news"), (b"marker", "news")]
        assert seen["carol"] == [(b"all", "news"), (b"for-carol", "dm"), (b"marker", "news")]
        # Lossy may lose a packet even on loopback: resend until one arrives.
        lossy = None
        while lossy is None:
            await send(b"lossy", reliable=False, topic="telemetry", destination_identities=["bob"])
            try:
                lossy = await asyncio.wait_for(bob_got.get(), 0.5)
            except TimeoutError:
                continue
        assert isinstance(lossy, rtc.DataPacket) and lossy.participant is not None
        assert (lossy.data, lossy.topic, lossy.kind, lossy.participant.identity) == (
            b"lossy",
            "telemetry",
            rtc.DataPacketKind.KIND_LOSSY,
            "alice",
        )
        assert carol_got.empty()


async def test_text_and_byte_streams_with_attributes(server: Server, room_name: str) -> None:
    long_text = secrets.token_urlsafe(60_000)  # incompressible: sent as header, chunks and trailer
    payload = secrets.token_bytes(50_000)
    async with (
        joined(server.devserver, "alice", room_name) as alice,
        joined(server.devserver, "bob", room_name) as bob,
        joined(server.devserver, "carol", room_name) as carol,
    ):
        streams: asyncio.Queue[tuple[str, str, tuple[tuple[str, str], ...], object]] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        async def read_text(who: str, reader: rtc.TextStreamReader, sender: str) -> None:
            streams.put_nowait(
                (who, sender, tuple(sorted((reader.info.attributes or {}).items())), await reader.read_all())
            )

        async def read_bytes(who: str, reader: rtc.ByteStreamReader, sender: str) -> None:
            data = b"".join([chunk async for chunk in reader])
            streams.put_nowait((who, sender, tuple(sorted((reader.info.attributes or {}).items())), data))

        for who, room in (("bob", bob), ("carol", carol)):
            room.register_text_stream_handler(
                "notes", lambda r, s, w=who: tasks.add(asyncio.create_task(read_text(w, r, s)))
            )
            room.register_byte_stream_handler(
                "files", lambda r, s, w=who: tasks.add(asyncio.create_task(read_bytes(w, r, s)))
            )
        await alice.local_participant.send_text(long_text, topic="notes", attributes={"lang": "en"})
        assert {await asyncio.wait_for(streams.get(), EVENT) for _ in range(2)} == {
            (who, "alice", (("lang", "en"),), long_text) for who in ("bob", "carol")
        }
        relayed = server.tap.in_room(room_name)
        kinds = [r.kind for r in relayed]
        assert kinds[0] == "stream_header" and kinds[-1] == "stream_trailer"
        assert kinds.count("stream_chunk") >= 2
        # Compressed (every recipient allows it) but too large to go inline.
        header = relayed[0].packet.stream_header
        assert header.compression == models.DataStream.CompressionType.DEFLATE_RAW
        assert not header.inline_content
        writer = await alice.local_participant.stream_bytes(
            "blob.bin", topic="files", attributes={"part": "1"}, destination_identities=["carol"]
        )
        for start in range(0, len(payload), 16_000):
            await writer.write(payload[start : start + 16_000])
        await writer.aclose()
        assert await asyncio.wait_for(streams.get(), EVENT) == ("carol", "alice", (("part", "1"),), payload)
        # bob was not a destination: the next stream he gets is one sent to everyone afterwards.
        await alice.local_participant.send_text("after", topic="notes")
        assert {await asyncio.wait_for(streams.get(), EVENT) for _ in range(2)} == {
            (who, "alice", (), "after") for who in ("bob", "carol")
        }
        await asyncio.gather(*tasks)
        assert streams.empty()


async def test_compressible_text_goes_inline_and_compressed(server: Server, room_name: str) -> None:
    text = "framepool " * 5000
    async with (
        joined(server.devserver, "alice", room_name) as alice,
        joined(server.devserver, "bob", room_name) as bob,
    ):
        header = server.tap.next(lambda r: r.room == room_name and r.kind == "stream_header")
        texts: asyncio.Queue[str] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        async def read(reader: rtc.TextStreamReader) -> None:
            texts.put_nowait(await reader.read_all())

        bob.register_text_stream_handler("notes", lambda r, _: tasks.add(asyncio.create_task(read(r))))
        await alice.local_participant.send_text(text, topic="notes")
        assert await asyncio.wait_for(texts.get(), EVENT) == text
        relayed = (await asyncio.wait_for(header, EVENT)).packet.stream_header
        # Every recipient advertised client_protocol 2 and deflate-raw: one inline, compressed packet.
        assert relayed.compression == models.DataStream.CompressionType.DEFLATE_RAW
        assert 0 < len(relayed.inline_content) < len(text) // 10
        assert not [r for r in server.tap.in_room(room_name) if r.kind == "stream_chunk"]
        await asyncio.gather(*tasks)


async def test_rpc_success_unknown_method_timeout_and_v2_payload(server: Server, room_name: str) -> None:
    async with (
        joined(server.devserver, "alice", room_name) as alice,
        joined(server.devserver, "bob", room_name) as bob,
    ):
        release = asyncio.Event()

        async def echo(data: rtc.RpcInvocationData) -> str:
            return f"{data.caller_identity}:{len(data.payload)}"

        async def slow(data: rtc.RpcInvocationData) -> str:
            await release.wait()
            return "late"

        bob.local_participant.register_rpc_method("echo", echo)
        bob.local_participant.register_rpc_method("slow", slow)
        call = alice.local_participant.perform_rpc
        assert await call(destination_identity="bob", method="echo", payload="hi") == "alice:2"
        # Over the v1 limit: the server reported 1.13.2 (>= 1.8.0) and bob's client_protocol 2, so the SDK
        # sends the request as a v2 text stream on lk.rpc_request and the payload is not refused.
        big = "x" * (V1_PAYLOAD_LIMIT + 5000)
        assert await call(destination_identity="bob", method="echo", payload=big) == f"alice:{len(big)}"
        topics = {
            r.packet.stream_header.topic for r in server.tap.in_room(room_name) if r.kind == "stream_header"
        }
        assert topics == {"lk.rpc_request", "lk.rpc_response"}
        acks = [r for r in server.tap.in_room(room_name) if r.kind == "rpc_ack"]
        assert len(acks) == 2 and all(r.packet.destination_identities == ["alice"] for r in acks)
        with pytest.raises(rtc.RpcError) as unknown:
            await call(destination_identity="bob", method="nope", payload="")
        assert unknown.value.code == rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD
        with pytest.raises(rtc.RpcError) as late:
            await call(destination_identity="bob", method="slow", payload="", response_timeout=1.0)
        assert late.value.code == rtc.RpcError.ErrorCode.RESPONSE_TIMEOUT
        release.set()


async def test_rpc_to_a_legacy_callee_uses_v1_and_its_limit(server: Server, room_name: str) -> None:
    async with (
        joined(server.devserver, "alice", room_name) as alice,
        joined(server.devserver, "bob", room_name) as bob,
    ):
        bob.local_participant.register_rpc_method("echo", lambda data: data.payload.upper())
        # Make bob look like a client without RPC v2 (client_protocol 0), as livekit-server would show one.
        room = server.devserver.rooms.get(room_name)
        assert room is not None
        room.participants["bob"].client_info.client_protocol = 0
        # The SDK applies a ParticipantInfo update in full, emitting its metadata change on the way; a
        # second update seen by alice means the first one is fully applied.
        await room.update_participant("bob", metadata="legacy")
        updated = next_event(alice, "participant_metadata_changed", lambda p, old, new: new == "applied")
        await room.update_participant("bob", metadata="applied")
        await asyncio.wait_for(updated, EVENT)
        request = server.tap.next(lambda r: r.room == room_name and r.kind == "rpc_request")
        assert (
            await alice.local_participant.perform_rpc(destination_identity="bob", method="echo", payload="hi")
            == "HI"
        )
        relayed = await asyncio.wait_for(request, EVENT)
        assert (relayed.sender, list(relayed.packet.destination_identities)) == ("alice", ["bob"])
        assert relayed.packet.rpc_request.version == 1
        with pytest.raises(rtc.RpcError) as too_large:
            await alice.local_participant.perform_rpc(
                destination_identity="bob", method="echo", payload="x" * (V1_PAYLOAD_LIMIT + 1)
            )
        assert too_large.value.code == rtc.RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE


async def test_dtmf_reaches_the_others(server: Server, room_name: str) -> None:
    async with (
        joined(server.devserver, "alice", room_name) as alice,
        joined(server.devserver, "bob", room_name) as bob,
    ):
        dtmf = next_event(bob, "sip_dtmf_received")
        await alice.local_participant.publish_dtmf(code=5, digit="5")
        event = await asyncio.wait_for(dtmf, EVENT)
        assert (event.code, event.digit, event.participant.identity) == (5, "5", "alice")


async def test_transcriptions_are_relayed_from_agents_only(server: Server, room_name: str) -> None:
    def transcription(who: str, text: str) -> rtc.Transcription:
        segment = rtc.TranscriptionSegment(
            id=f"seg-{text}", text=text, start_time=0, end_time=100, language="en", final=True
        )
        # The SDK's receiver parses track_sid as a TrackSid and panics (aborting the process) on "".
        return rtc.Transcription(participant_identity=who, track_sid="TR_notpublished", segments=[segment])

    async with (
        joined(server.devserver, "agent", room_name, kind="agent") as agent,
        joined(server.devserver, "alice", room_name) as alice,
        joined(server.devserver, "bob", room_name) as bob,
    ):
        heard: asyncio.Queue[tuple[list[rtc.TranscriptionSegment], rtc.Participant]] = asyncio.Queue()
        bob.on("transcription_received", lambda segments, who, _: heard.put_nowait((segments, who)))
        bob_got = queue_of(bob, "data_received")
        # livekit-server forwards transcriptions only from agents: alice's is dropped. Her next reliable
        # packet arrives after it was handled (one sender's reliable packets stay in order).
        await alice.local_participant.publish_transcription(transcription("alice", "ignored"))
        await alice.local_participant.publish_data(b"marker", reliable=True)
        await got(bob_got)
        data = server.devserver.rooms.get(room_name).data  # type: ignore[union-attr]
        assert data.dropped["transcription_not_agent"] == 1 and heard.empty()
        await agent.local_participant.publish_transcription(transcription("alice", "hello"))
        segments, participant = await asyncio.wait_for(heard.get(), EVENT)
        assert [(s.id, s.text, s.final) for s in segments] == [("seg-hello", "hello", True)]
        assert participant.identity == "alice"
        assert data.relayed["transcription"] == 1 and heard.empty()


async def test_hidden_sender_is_not_named(server: Server, room_name: str) -> None:
    async with (
        joined(server.devserver, "observer", room_name, hidden=True) as observer,
        joined(server.devserver, "bob", room_name) as bob,
    ):
        bob_got = queue_of(bob, "data_received")
        relayed = server.tap.next(lambda r: r.room == room_name and r.kind == "user")
        await observer.local_participant.publish_data(b"psst", reliable=True, topic="t")
        packet = await got(bob_got)
        assert isinstance(packet, rtc.DataPacket)
        assert (packet.data, packet.topic, packet.participant) == (b"psst", "t", None)
        stamped = (await asyncio.wait_for(relayed, EVENT)).packet
        assert (stamped.participant_identity, stamped.user.participant_identity) == ("", "")


async def test_a_retried_send_data_is_delivered_once(server: Server, room_name: str) -> None:
    """livekit-api gives each SendData a fresh nonce; a retry of the same request repeats it, and the server
    delivers it once (livekit-server remembers a room's last 100 nonces)."""
    token = api.AccessToken(API_KEY, API_SECRET).with_grants(api.VideoGrants(room_admin=True, room=room_name))
    headers = {"Content-Type": "application/protobuf", "Authorization": f"Bearer {token.to_jwt()}"}
    url = server.devserver.http_url + "/twirp/livekit.RoomService/SendData"
    async with joined(server.devserver, "bob", room_name) as bob, aiohttp.ClientSession() as session:
        bob_got = queue_of(bob, "data_received")
        first, second = uuid.uuid4().bytes, uuid.uuid4().bytes
        for data, nonce in ((b"once", first), (b"once", first), (b"next", second)):
            body = api.SendDataRequest(
                room=room_name, data=data, kind=api.DataPacket.Kind.RELIABLE, nonce=nonce
            )
            async with session.post(url, data=body.SerializeToString(), headers=headers) as response:
                assert response.status == 200
        received = [await got(bob_got), await got(bob_got)]
        assert [p.data for p in received if isinstance(p, rtc.DataPacket)] == [b"once", b"next"]
        assert server.devserver.rooms.get(room_name).data.dropped["duplicate_nonce"] == 1  # type: ignore[union-attr]
