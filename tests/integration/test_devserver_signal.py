"""Signal, data and room behaviour of the loopback dev server with the real livekit SDK."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time

import aiohttp
import jwt
import pytest
from livekit import api, rtc
from livekit.protocol import models
from livekit.protocol import room as room_pb
from livekit.protocol import rtc as rtc_pb

from framepool.devserver.server import DevServer
from tests.support.devserver import API_KEY, API_SECRET, make_token
from tests.support.sdk import joined, next_event
from tests.support.timeouts import EVENT, QUIET

pytestmark = pytest.mark.integration


async def test_data_reliable_lossy_topic_and_destinations(devserver: DevServer, room_name: str) -> None:
    async with (
        joined(devserver, "alice", room_name) as alice,
        joined(devserver, "bob", room_name) as bob,
        joined(devserver, "carol", room_name) as carol,
    ):
        bob_got: asyncio.Queue[rtc.DataPacket] = asyncio.Queue()
        carol_got: asyncio.Queue[rtc.DataPacket] = asyncio.Queue()
        bob.on("data_received", bob_got.put_nowait)
        carol.on("data_received", carol_got.put_nowait)
        await alice.local_participant.publish_data(b"to-all", reliable=True, topic="news")
        await alice.local_participant.publish_data(b"to-bob", reliable=True, destination_identities=["bob"])
        for queue in (bob_got, carol_got):
            packet = await asyncio.wait_for(queue.get(), EVENT)
            assert (packet.data, packet.topic, packet.participant.identity) == (b"to-all", "news", "alice")
        assert (await asyncio.wait_for(bob_got.get(), EVENT)).data == b"to-bob"
        # Lossy packets on loopback: send a few, one is enough to prove the path.
        for _ in range(5):
            await alice.local_participant.publish_data(
                b"lossy", reliable=False, destination_identities=["carol"]
            )
        packet = await asyncio.wait_for(carol_got.get(), EVENT)
        assert (packet.data, packet.kind) == (b"lossy", rtc.DataPacketKind.KIND_LOSSY)
        assert bob_got.empty()


async def test_text_stream(devserver: DevServer, room_name: str) -> None:
    async with joined(devserver, "alice", room_name) as alice, joined(devserver, "bob", room_name) as bob:
        texts: asyncio.Queue[str] = asyncio.Queue()

        async def read(reader: rtc.TextStreamReader, identity: str) -> None:
            texts.put_nowait(f"{identity}:{await reader.read_all()}")

        tasks: set[asyncio.Task[None]] = set()
        bob.register_text_stream_handler("chat", lambda r, who: tasks.add(asyncio.create_task(read(r, who))))
        await alice.local_participant.send_text("x" * 20000, topic="chat")
        assert await asyncio.wait_for(texts.get(), EVENT) == "alice:" + "x" * 20000
        await asyncio.gather(*tasks)


async def test_byte_stream_reaches_only_its_destination(devserver: DevServer, room_name: str) -> None:
    payload = bytes(range(256)) * 300  # 76.8 kB: several chunks
    async with (
        joined(devserver, "alice", room_name) as alice,
        joined(devserver, "bob", room_name) as bob,
        joined(devserver, "carol", room_name) as carol,
    ):
        received: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue()

        async def read(reader: rtc.ByteStreamReader, identity: str) -> None:
            chunks = [chunk async for chunk in reader]
            received.put_nowait((identity, reader.info.name, b"".join(chunks)))

        tasks: set[asyncio.Task[None]] = set()
        for room in (bob, carol):
            room.register_byte_stream_handler(
                "files", lambda r, who: tasks.add(asyncio.create_task(read(r, who)))
            )
        writer = await alice.local_participant.stream_bytes(
            "frame.bin", total_size=len(payload), topic="files", destination_identities=["bob"]
        )
        for start in range(0, len(payload), 20000):
            await writer.write(payload[start : start + 20000])
        await writer.aclose()
        assert await asyncio.wait_for(received.get(), EVENT) == ("alice", "frame.bin", payload)
        # Then a stream to everyone: the first thing carol receives must be this one, not bob's file.
        marker = await alice.local_participant.stream_bytes("marker", topic="files")
        await marker.write(b"m")
        await marker.aclose()
        got = {await asyncio.wait_for(received.get(), EVENT) for _ in range(2)}
        assert got == {("alice", "marker", b"m")}
        await asyncio.gather(*tasks)
        assert received.empty()


async def test_rpc(devserver: DevServer, room_name: str) -> None:
    async with joined(devserver, "alice", room_name) as alice, joined(devserver, "bob", room_name) as bob:

        @bob.local_participant.register_rpc_method("greet")  # type: ignore[untyped-decorator]
        async def greet(data: rtc.RpcInvocationData) -> str:
            return f"hello {data.caller_identity}: {data.payload}"

        reply = await alice.local_participant.perform_rpc(
            destination_identity="bob", method="greet", payload="hi"
        )
        assert reply == "hello alice: hi"


async def test_metadata_and_attributes_reach_others(devserver: DevServer, room_name: str) -> None:
    async with (
        joined(devserver, "alice", room_name, can_update_own_metadata=True) as alice,
        joined(devserver, "bob", room_name) as bob,
    ):
        changed = next_event(bob, "participant_metadata_changed")
        await alice.local_participant.set_metadata("ready")
        participant, _old, new = await asyncio.wait_for(changed, EVENT)
        assert (participant.identity, new) == ("alice", "ready")
        attributes = next_event(bob, "participant_attributes_changed")
        await alice.local_participant.set_attributes({"role": "speaker"})
        await asyncio.wait_for(attributes, EVENT)
        assert bob.remote_participants["alice"].attributes == {"role": "speaker"}


async def test_metadata_update_without_permission_is_refused(devserver: DevServer, room_name: str) -> None:
    async with joined(devserver, "alice", room_name) as alice:
        # SDK 1.2.1 does not surface the server's NOT_ALLOWED response: check the server did not apply it.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(alice.local_participant.set_metadata("nope"), QUIET)
        assert devserver.rooms.get(room_name).participants["alice"].metadata == ""  # type: ignore[union-attr]


@pytest.mark.parametrize("case", ["wrong secret", "expired", "no roomJoin grant", "no room named"])
async def test_bad_tokens_are_refused(devserver: DevServer, room_name: str, case: str) -> None:
    """livekit-server answers bad tokens and missing grants alike: 401."""
    tokens = {
        "wrong secret": lambda: make_token("eve", room_name, secret="not-the-secret"),
        "expired": lambda: make_token("eve", room_name, ttl=-120),
        "no roomJoin grant": lambda: make_token("eve", room_name, room_join=False),
        # livekit-api refuses to sign a join grant without a room: sign it by hand.
        "no room named": lambda: jwt.encode(
            {"iss": API_KEY, "sub": "eve", "exp": int(time.time()) + 600, "video": {"roomJoin": True}},
            API_SECRET,
            algorithm="HS256",
        ),
    }
    token = tokens[case]()
    with pytest.raises(rtc.ConnectError):
        await asyncio.wait_for(rtc.Room().connect(devserver.url, token), EVENT)
    async with aiohttp.ClientSession() as http:
        for path in ("/rtc/validate", "/rtc/v1/validate"):
            response = await http.get(
                f"{devserver.http_url}{path}", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status == 401
            if case.startswith("no "):
                assert (await response.text()).startswith("permissions denied")
    assert devserver.rooms.get(room_name) is None


async def test_publish_without_permission_is_refused(devserver: DevServer, room_name: str) -> None:
    async with joined(devserver, "viewer", room_name, can_publish=False) as viewer:
        source = rtc.AudioSource(48000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        with pytest.raises(Exception):  # noqa: B017 - the SDK raises its own error type for a refused publish
            await asyncio.wait_for(viewer.local_participant.publish_track(track), EVENT)
        assert not devserver.rooms.get(room_name).participants["viewer"].tracks  # type: ignore[union-attr]


async def test_hidden_agent_is_not_announced(devserver: DevServer, room_name: str) -> None:
    async with (
        joined(devserver, "alice", room_name) as alice,
        joined(devserver, "agent-1", room_name, hidden=True) as _agent,
    ):
        room = devserver.rooms.get(room_name)
        assert room is not None and set(room.participants) == {"alice", "agent-1"}
        assert "agent-1" not in alice.remote_participants


async def test_join_leave_events_and_room_closes_after_departure(
    devserver: DevServer, room_name: str
) -> None:
    async with joined(devserver, "alice", room_name) as alice:
        arrived = next_event(alice, "participant_connected")
        async with joined(devserver, "bob", room_name):
            assert (await asyncio.wait_for(arrived, EVENT)).identity == "bob"
            departed = next_event(alice, "participant_disconnected")
        assert (await asyncio.wait_for(departed, EVENT)).identity == "bob"
        room = devserver.rooms.get(room_name)
        assert room is not None
    await asyncio.wait_for(room.closed.wait(), EVENT)
    assert devserver.rooms.get(room_name) is None


async def test_room_delete_disconnects_participants(devserver: DevServer, room_name: str) -> None:
    async with joined(devserver, "alice", room_name) as alice:
        disconnected = next_event(alice, "disconnected")
        assert await devserver.rooms.delete(room_name)
        assert await asyncio.wait_for(disconnected, EVENT) == rtc.DisconnectReason.ROOM_DELETED


def _join_query(room: str) -> str:
    join = rtc_pb.WrappedJoinRequest(join_request=rtc_pb.JoinRequest().SerializeToString())
    return base64.urlsafe_b64encode(join.SerializeToString()).decode()


@pytest.mark.parametrize("payload", [b"\xff\xff\xff garbage", "text frame", b"\x00" * (2 << 20)])
async def test_malformed_signal_input_closes_only_that_connection(
    devserver: DevServer, room_name: str, payload: bytes | str
) -> None:
    left = asyncio.Event()

    class LeaveWatcher:
        def participant_left(self, room: object, participant: object, reason: object) -> None:
            left.set()

    devserver.rooms.add_listener(LeaveWatcher())
    async with joined(devserver, "alice", room_name) as alice, aiohttp.ClientSession() as http:
        url = f"{devserver.url}/rtc/v1?join_request={_join_query(room_name)}"
        ws = await http.ws_connect(
            url, headers={"Authorization": f"Bearer {make_token('mallory', room_name)}"}, max_msg_size=0
        )
        first = await asyncio.wait_for(ws.receive(), EVENT)
        assert rtc_pb.SignalResponse.FromString(first.data).WhichOneof("message") == "join"
        await (ws.send_str(payload) if isinstance(payload, str) else ws.send_bytes(payload))
        async with asyncio.timeout(EVENT):
            while not ws.closed:
                await ws.receive()
        assert ws.close_code in (1003, 1007, 1009)
        await asyncio.wait_for(left.wait(), EVENT)
        room = devserver.rooms.get(room_name)
        assert room is not None and "mallory" not in room.participants
        assert alice.isconnected()
    bad = await aiohttp.ClientSession().__aenter__()
    try:
        response = await bad.get(
            f"{devserver.http_url}/rtc/v1?join_request=%%%",
            headers={"Authorization": f"Bearer {make_token('x', room_name)}"},
        )
        assert response.status == 400
    finally:
        await bad.close()


async def test_full_room_refuses_joins_but_not_agents(devserver: DevServer, room_name: str) -> None:
    """As livekit-server: a join beyond max_participants fails with HTTP 500 before the websocket upgrade;
    agents neither count nor are refused; a participant rejoining under its identity takes its own place."""
    await devserver.rooms.create(room_name, max_participants=2)
    async with joined(devserver, "alice", room_name), joined(devserver, "bob", room_name):
        with pytest.raises(rtc.ConnectError):
            await asyncio.wait_for(rtc.Room().connect(devserver.url, make_token("carol", room_name)), EVENT)
        async with aiohttp.ClientSession() as http:
            response = await http.get(
                f"{devserver.url}/rtc/v1?join_request={_join_query(room_name)}",
                headers={"Authorization": f"Bearer {make_token('carol', room_name)}"},
            )
            assert (response.status, await response.text()) == (500, "room has exceeded its max participants")
        async with joined(devserver, "agent-1", room_name, kind="agent"), joined(devserver, "bob", room_name):
            room = devserver.rooms.get(room_name)
            assert room is not None and set(room.participants) == {"alice", "bob", "agent-1"}
    async with joined(devserver, "carol", room_name), joined(devserver, "dave", room_name):
        room = devserver.rooms.get(room_name)
        assert room is not None and set(room.participants) == {"carol", "dave"}


async def test_token_room_config_configures_the_room_it_creates(devserver: DevServer, room_name: str) -> None:
    token = (
        api.AccessToken(API_KEY, API_SECRET)
        .with_identity("alice")
        .with_grants(api.VideoGrants(room_join=True, room=room_name))
        .with_room_config(room_pb.RoomConfiguration(max_participants=1, metadata="from-token"))
        .to_jwt()
    )
    sdk_room = rtc.Room()
    await asyncio.wait_for(sdk_room.connect(devserver.url, token), EVENT)
    try:
        room = devserver.rooms.get(room_name)
        assert room is not None and (room.max_participants, room.metadata) == (1, "from-token")
        assert sdk_room.metadata == "from-token"
        with pytest.raises(rtc.ConnectError):
            await asyncio.wait_for(rtc.Room().connect(devserver.url, make_token("bob", room_name)), EVENT)
    finally:
        await sdk_room.disconnect()


async def test_agent_does_not_keep_the_room_open_and_is_announced_as_agent(
    devserver: DevServer, room_name: str
) -> None:
    async with joined(devserver, "alice", room_name) as alice:
        arrived = next_event(alice, "participant_connected", lambda p: p.identity == "agent-1")
        async with joined(devserver, "agent-1", room_name, kind="agent", agent=True) as agent:
            assert (await asyncio.wait_for(arrived, EVENT)).kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
            assert agent.remote_participants["alice"].kind == rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
            disconnected = next_event(agent, "disconnected")
            room = devserver.rooms.get(room_name)
            assert room is not None
            await alice.disconnect()
            # The server's departure_timeout (0.5 s in the fixture) after the last non-agent left.
            assert await asyncio.wait_for(disconnected, EVENT) == rtc.DisconnectReason.ROOM_CLOSED
            assert room.closed.is_set() and devserver.rooms.get(room_name) is None


async def test_agent_alone_does_not_hold_a_room_past_its_empty_timeout(
    devserver: DevServer, room_name: str
) -> None:
    room = await devserver.rooms.create(room_name, empty_timeout=1)
    async with joined(devserver, "agent-1", room_name, kind="agent") as agent:
        disconnected = next_event(agent, "disconnected")
        assert await asyncio.wait_for(disconnected, EVENT) == rtc.DisconnectReason.ROOM_CLOSED
    assert room.closed.is_set()


async def test_resume_request_is_answered_with_a_reconnect_leave(
    devserver: DevServer, room_name: str
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            f"{devserver.url}/rtc?reconnect=1&sid=PA_gone&protocol=16",
            headers={"Authorization": f"Bearer {make_token('alice', room_name)}"},
        )
        message = await asyncio.wait_for(ws.receive(), EVENT)
        leave = rtc_pb.SignalResponse.FromString(message.data).leave
        assert (leave.can_reconnect, leave.reason, leave.action) == (
            True,
            models.DisconnectReason.STATE_MISMATCH,
            rtc_pb.LeaveRequest.Action.RECONNECT,
        )
        await ws.close()
    assert devserver.rooms.get(room_name) is None
