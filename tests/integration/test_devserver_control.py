"""RoomService over Twirp against the loopback dev server, through the real livekit-api client."""

from __future__ import annotations

import asyncio
import datetime
import json

import aiohttp
import pytest
from livekit import api, rtc
from livekit.protocol import models
from livekit.protocol import room as room_pb

from framepool.devserver.server import DevServer
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.sdk import joined, next_event
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.integration


def signed(**grants: object) -> str:
    return api.AccessToken(API_KEY, API_SECRET).with_grants(api.VideoGrants(**grants)).to_jwt()  # type: ignore[arg-type]


async def test_create_list_delete_rooms(lkapi: api.LiveKitAPI, room_name: str) -> None:
    created = await lkapi.room.create_room(
        api.CreateRoomRequest(name=room_name, metadata="m1", max_participants=7)
    )
    assert created.name == room_name
    assert created.sid.startswith("RM_")
    assert created.metadata == "m1"
    assert created.max_participants == 7
    again = await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
    assert again.sid == created.sid  # CreateRoom is idempotent

    other = room_name + "-b"
    await lkapi.room.create_room(api.CreateRoomRequest(name=other))
    listed = await lkapi.room.list_rooms(api.ListRoomsRequest())
    assert {room_name, other} <= {r.name for r in listed.rooms}
    only = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[other]))
    assert [r.name for r in only.rooms] == [other]

    await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))
    listed = await lkapi.room.list_rooms(api.ListRoomsRequest())
    assert room_name not in {r.name for r in listed.rooms}
    with pytest.raises(api.TwirpError) as missing:
        await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))
    assert (missing.value.code, missing.value.status) == ("not_found", 404)


async def test_participant_operations_on_missing_room_are_not_found(
    lkapi: api.LiveKitAPI, room_name: str
) -> None:
    with pytest.raises(api.TwirpError) as err:
        await lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name))
    assert (err.value.code, err.value.status) == ("not_found", 404)
    await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
    empty = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name))
    assert list(empty.participants) == []
    with pytest.raises(api.TwirpError) as err:
        await lkapi.room.get_participant(api.RoomParticipantIdentity(room=room_name, identity="nobody"))
    assert (err.value.code, err.value.status) == ("not_found", 404)
    with pytest.raises(api.TwirpError) as err:
        await lkapi.room.remove_participant(api.RoomParticipantIdentity(room=room_name, identity="nobody"))
    assert err.value.code == "not_found"


async def test_missing_grants_are_unauthenticated_like_livekit_server(
    devserver: DevServer, room_name: str
) -> None:
    no_create = api.LiveKitAPI.with_token(signed(room_list=True), devserver.http_url)
    try:
        with pytest.raises(api.TwirpError) as err:
            await no_create.room.create_room(api.CreateRoomRequest(name=room_name))
        # livekit-server wraps grant failures as Twirp unauthenticated: "permissions denied", 401.
        assert (err.value.code, err.value.status, err.value.message) == (
            "unauthenticated",
            401,
            "permissions denied",
        )
        listed = await no_create.room.list_rooms(api.ListRoomsRequest())  # roomList suffices for ListRooms
        assert room_name not in {r.name for r in listed.rooms}
        with pytest.raises(api.TwirpError) as err:
            await no_create.room.delete_room(api.DeleteRoomRequest(room=room_name))
        assert err.value.status == 401
        with pytest.raises(api.TwirpError) as err:
            await no_create.room.list_participants(api.ListParticipantsRequest(room=room_name))
        assert err.value.status == 401
    finally:
        await no_create.aclose()

    other_room_admin = api.LiveKitAPI.with_token(
        signed(room_admin=True, room="elsewhere"), devserver.http_url
    )
    try:
        with pytest.raises(api.TwirpError) as err:
            await other_room_admin.room.send_data(api.SendDataRequest(room=room_name, data=b"x"))
        assert err.value.status == 401
    finally:
        await other_room_admin.aclose()


async def test_bad_tokens_are_unauthenticated(devserver: DevServer, room_name: str) -> None:
    expired_token = (
        api.AccessToken(API_KEY, API_SECRET)
        .with_ttl(datetime.timedelta(minutes=-5))
        .with_grants(api.VideoGrants(room_create=True))
        .to_jwt()
    )
    clients = [
        api.LiveKitAPI(devserver.http_url, API_KEY, "not-the-secret"),
        api.LiveKitAPI(devserver.http_url, "nokey", API_SECRET),
        api.LiveKitAPI.with_token(expired_token, devserver.http_url),
    ]
    try:
        for client in clients:
            with pytest.raises(api.TwirpError) as err:
                await client.room.create_room(api.CreateRoomRequest(name=room_name))
            assert (err.value.code, err.value.status) == ("unauthenticated", 401)
    finally:
        for client in clients:
            await client.aclose()


async def post(
    devserver: DevServer,
    path: str,
    body: bytes,
    content_type: str,
    token: str | None = "default",
    method: str = "POST",
) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = "Bearer " + (
            signed(room_create=True, room_list=True) if token == "default" else token
        )
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, devserver.http_url + path, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.read()


async def test_json_bodies_and_answers(devserver: DevServer, room_name: str) -> None:
    status, body = await post(
        devserver,
        "/twirp/livekit.RoomService/CreateRoom",
        json.dumps({"name": room_name, "emptyTimeout": 30}).encode(),
        "application/json",
    )
    assert status == 200, body
    room = json.loads(body)
    assert room["name"] == room_name and room["sid"].startswith("RM_")
    status, body = await post(devserver, "/twirp/livekit.RoomService/ListRooms", b"{}", "application/json")
    assert status == 200
    assert room_name in [r["name"] for r in json.loads(body)["rooms"]]


@pytest.mark.parametrize(
    ("path", "body", "content_type", "method", "code", "status"),
    [
        ("/twirp/livekit.RoomService/NoSuchMethod", b"", "application/protobuf", "POST", "bad_route", 404),
        ("/twirp/livekit.NoSuchService/CreateRoom", b"", "application/protobuf", "POST", "bad_route", 404),
        ("/twirp/livekit.RoomService/ListRooms", b"", "application/protobuf", "GET", "bad_route", 404),
        (
            "/twirp/livekit.RoomService/MutePublishedTrack",
            b"",
            "application/protobuf",
            "POST",
            "unimplemented",
            501,
        ),
        ("/twirp/livekit.RoomService/ListRooms", b"hello", "text/plain", "POST", "bad_route", 404),
        (
            "/twirp/livekit.RoomService/CreateRoom",
            b"\xff\xff\xff\xff",
            "application/protobuf",
            "POST",
            "malformed",
            400,
        ),
        ("/twirp/livekit.RoomService/CreateRoom", b"{not json", "application/json", "POST", "malformed", 400),
        (
            "/twirp/livekit.RoomService/CreateRoom",
            b'{"name": 5}',
            "application/json",
            "POST",
            "malformed",
            400,
        ),
        ("/twirp/livekit.RoomService/CreateRoom", b"{}", "application/json", "POST", "invalid_argument", 400),
        (
            "/twirp/livekit.RoomService/SendData",
            b"\n\x01r" + b"\x12\x80\x80\x80\x01" + b"x" * (2 << 20),
            "application/protobuf",
            "POST",
            "malformed",
            400,
        ),
    ],
)
async def test_malformed_requests_get_twirp_errors(
    devserver: DevServer, path: str, body: bytes, content_type: str, method: str, code: str, status: int
) -> None:
    got_status, got_body = await post(devserver, path, body, content_type, method=method)
    error = json.loads(got_body)
    assert (got_status, error["code"]) == (status, code), error
    assert error["msg"]
    # The server survives garbage: the next well-formed request works.
    ok_status, _ = await post(devserver, "/twirp/livekit.RoomService/ListRooms", b"{}", "application/json")
    assert ok_status == 200


@pytest.mark.parametrize(
    ("token", "code", "status"),
    [
        (None, "unauthenticated", 401),
        ("not.a.jwt", "unauthenticated", 401),
        ("", "unauthenticated", 401),
    ],
)
async def test_missing_or_garbage_token(
    devserver: DevServer, token: str | None, code: str, status: int
) -> None:
    got_status, got_body = await post(
        devserver, "/twirp/livekit.RoomService/ListRooms", b"{}", "application/json", token=token
    )
    assert (got_status, json.loads(got_body)["code"]) == (status, code)


async def test_room_proto_roundtrip_through_protobuf(devserver: DevServer, room_name: str) -> None:
    request = room_pb.CreateRoomRequest(name=room_name, metadata="proto")
    status, body = await post(
        devserver,
        "/twirp/livekit.RoomService/CreateRoom",
        request.SerializeToString(),
        "application/protobuf",
    )
    assert status == 200
    assert models.Room.FromString(body).metadata == "proto"


# -- with real SDK participants -------------------------------------------------------------------


async def test_list_get_update_participants(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    async with joined(devserver, "alice", room_name) as alice:
        listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name))
        assert [p.identity for p in listed.participants] == ["alice"]
        info = await lkapi.room.get_participant(api.RoomParticipantIdentity(room=room_name, identity="alice"))
        assert info.sid == alice.local_participant.sid

        metadata_changed = next_event(alice, "participant_metadata_changed")
        attributes_changed = next_event(alice, "participant_attributes_changed")
        updated = await lkapi.room.update_participant(
            api.UpdateParticipantRequest(
                room=room_name,
                identity="alice",
                metadata="new-meta",
                attributes={"team": "blue"},
                name="Alice",
            )
        )
        assert (updated.metadata, dict(updated.attributes), updated.name) == (
            "new-meta",
            {"team": "blue"},
            "Alice",
        )
        participant, _, new = await asyncio.wait_for(metadata_changed, EVENT)
        assert (participant.identity, new) == ("alice", "new-meta")
        await asyncio.wait_for(attributes_changed, EVENT)
        assert alice.local_participant.attributes == {"team": "blue"}


async def test_remove_participant_disconnects_it(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    async with joined(devserver, "alice", room_name) as alice:
        disconnected = next_event(alice, "disconnected")
        await lkapi.room.remove_participant(api.RoomParticipantIdentity(room=room_name, identity="alice"))
        assert await asyncio.wait_for(disconnected, EVENT) == rtc.DisconnectReason.PARTICIPANT_REMOVED
        listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name))
        assert list(listed.participants) == []


async def test_delete_room_disconnects_everyone(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    async with joined(devserver, "alice", room_name) as alice:
        disconnected = next_event(alice, "disconnected")
        await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))
        assert await asyncio.wait_for(disconnected, EVENT) == rtc.DisconnectReason.ROOM_DELETED


async def test_send_data_reaches_participants(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    async with joined(devserver, "alice", room_name) as alice, joined(devserver, "bob", room_name) as bob:
        to_alice = next_event(alice, "data_received")
        to_bob = next_event(bob, "data_received")
        await lkapi.room.send_data(
            api.SendDataRequest(
                room=room_name,
                data=b"hello",
                kind=models.DataPacket.Kind.RELIABLE,
                topic="news",
                destination_identities=["alice"],
            )
        )
        packet = await asyncio.wait_for(to_alice, EVENT)
        assert (packet.data, packet.topic, packet.participant) == (b"hello", "news", None)
        # Sent to everyone: bob's first packet is this one, so the targeted one did not reach him.
        await lkapi.room.send_data(
            api.SendDataRequest(room=room_name, data=b"all", kind=models.DataPacket.Kind.RELIABLE)
        )
        assert (await asyncio.wait_for(to_bob, EVENT)).data == b"all"
