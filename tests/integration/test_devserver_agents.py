"""The /agent worker protocol and agent dispatch of the loopback dev server.

Workers are tests.support.agentworker.TestWorker (livekit-protocol messages over aiohttp);
dispatches are made through the real livekit-api client.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from livekit import api, rtc
from livekit.protocol import agent as agent_pb
from livekit.protocol import models

from framepool.devserver.agents import AGENT_DISPATCHER, MAX_MESSAGE_BYTES
from framepool.devserver.server import DevServer
from tests.support.agentworker import TestWorker, agent_token
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.sdk import joined, publish_tone, stop
from tests.support.timeouts import EVENT, PROMPT

pytestmark = pytest.mark.integration


def worker(devserver: DevServer, **options: object) -> TestWorker:
    return TestWorker(devserver.url, API_KEY, API_SECRET, **options)  # type: ignore[arg-type]


async def dispatches(lkapi: api.LiveKitAPI, room: str) -> dict[str, api.AgentDispatch]:
    return {d.agent_name: d for d in await lkapi.agent_dispatch.list_dispatch(room)}


async def test_register_and_ping(devserver: DevServer) -> None:
    async with worker(devserver) as w:
        assert w.worker_id.startswith("AW_")
        await w.send(agent_pb.WorkerMessage(ping=agent_pb.WorkerPing(timestamp=1234)))
        pong = (await w.expect("pong")).pong
        assert pong.last_timestamp == 1234
        assert pong.timestamp > 0


async def test_room_job_on_create_room(devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str) -> None:
    permissions = models.ParticipantPermission(
        can_subscribe=True, can_publish=False, can_publish_data=True, hidden=True
    )
    async with worker(devserver, identity="agent-x", permissions=permissions) as w:
        room = await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
        offered = (await w.expect("availability")).availability.job
        assert offered.type == agent_pb.JT_ROOM
        assert offered.room.name == room_name and offered.room.sid == room.sid
        assert offered.id.startswith("AJ_") and offered.dispatch_id.startswith("AD_")
        assignment = (await w.expect("assignment")).assignment
        assert assignment.job.id == offered.id
        assert assignment.url == devserver.url

        claims = api.TokenVerifier(API_KEY, API_SECRET).verify(assignment.token)
        assert (claims.identity, claims.name, claims.kind, claims.metadata) == (
            "agent-x",
            "Test Agent",
            "agent",
            "agent-meta",
        )
        assert claims.attributes == {"role": "test"}
        assert claims.video is not None
        assert (claims.video.room, claims.video.room_join, claims.video.agent) == (room_name, True, True)
        assert (claims.video.can_publish, claims.video.can_subscribe, claims.video.hidden) == (
            False,
            True,
            True,
        )

        await w.update_job(offered.id, agent_pb.JS_RUNNING)
        await w.ping()
        listed = await dispatches(lkapi, room_name)
        assert list(listed) == [""]  # the automatic dispatch
        [job] = listed[""].state.jobs
        assert job.id == offered.id
        assert job.state.status == agent_pb.JS_RUNNING
        assert (job.state.worker_id, job.state.participant_identity) == (w.worker_id, "agent-x")


async def test_explicit_dispatch_and_delete(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    async with worker(devserver, agent_name="greeter") as named, worker(devserver) as automatic:
        dispatch = await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="greeter", room=room_name, metadata="hello")
        )
        assert dispatch.id.startswith("AD_")
        assert (dispatch.agent_name, dispatch.room, dispatch.metadata) == ("greeter", room_name, "hello")
        job = (await named.expect("assignment")).assignment.job
        assert (job.agent_name, job.metadata, job.dispatch_id) == ("greeter", "hello", dispatch.id)
        # The room did not exist: CreateDispatch created it, without agents, so automatic dispatch ran too.
        assert (await automatic.expect("assignment")).assignment.job.agent_name == ""

        got = await lkapi.agent_dispatch.get_dispatch(dispatch.id, room_name)
        assert got is not None and [j.id for j in got.state.jobs] == [job.id]
        assert set(await dispatches(lkapi, room_name)) == {"", "greeter"}

        deleted = await lkapi.agent_dispatch.delete_dispatch(dispatch.id, room_name)
        assert deleted.id == dispatch.id
        assert (await named.expect("termination")).termination.job_id == job.id
        assert set(await dispatches(lkapi, room_name)) == {""}
        with pytest.raises(api.TwirpError) as err:
            await lkapi.agent_dispatch.delete_dispatch(dispatch.id, room_name)
        assert (err.value.code, err.value.status) == ("not_found", 404)


async def test_unavailable_worker_passes_the_job_on(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    async with (
        worker(devserver, agent_name="a", policy="reject") as refusing,
        worker(devserver, agent_name="a") as accepting,
    ):
        # Weighted by 1 - load: the loaded worker is only chosen once the other one refused.
        await accepting.update_status(load=1.0)
        await accepting.ping()
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="a", room=room_name)
        )
        offered = (await refusing.expect("availability")).availability.job
        assignment = (await accepting.expect("assignment")).assignment
        assert assignment.job.id == offered.id
        assert refusing.inbox["assignment"].empty()


async def test_silent_worker_times_out_to_the_next(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    # The silent worker costs this bound in full; the accepting one must answer within it too, which a
    # loaded 2-core machine can miss at 0.2 s.
    devserver.app[AGENT_DISPATCHER].availability_timeout = PROMPT
    async with (
        worker(devserver, agent_name="a", policy="silent") as silent,
        worker(devserver, agent_name="a") as accepting,
    ):
        await accepting.update_status(load=1.0)
        await accepting.ping()
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="a", room=room_name)
        )
        offered = (await silent.expect("availability")).availability.job
        assert (await accepting.expect("assignment")).assignment.job.id == offered.id


async def test_full_worker_is_skipped(devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str) -> None:
    async with worker(devserver, agent_name="a") as full, worker(devserver, agent_name="a") as free:
        await full.update_status(load=0.0, status=agent_pb.WS_FULL)
        await full.ping()
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="a", room=room_name)
        )
        await free.expect("assignment")
        await full.ping()
        assert full.inbox["availability"].empty()


async def test_terminate_answer_cancels_the_job(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    async with (
        worker(devserver, agent_name="a", policy="terminate") as terminating,
        worker(devserver, agent_name="a") as other,
    ):
        await other.update_status(load=1.0)
        await other.ping()
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="a", room=room_name)
        )
        await terminating.expect("availability")
        await terminating.ping()
        [job] = (await dispatches(lkapi, room_name))["a"].state.jobs
        assert job.state.status == agent_pb.JS_CANCELLED
        assert other.inbox["availability"].empty()


async def test_failed_job_keeps_its_error(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    async with worker(devserver) as w:
        await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
        job = (await w.expect("assignment")).assignment.job
        await w.update_job(job.id, agent_pb.JS_RUNNING)
        await w.update_job(job.id, agent_pb.JS_FAILED, error="entrypoint raised ValueError: boom")
        await w.ping()
        [state] = [j.state for j in (await dispatches(lkapi, room_name))[""].state.jobs]
        assert state.status == agent_pb.JS_FAILED
        assert state.error == "entrypoint raised ValueError: boom"
        assert state.ended_at > 0


async def test_room_agents_suppress_automatic_dispatch(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    async with worker(devserver) as automatic, worker(devserver, agent_name="named") as named:
        await lkapi.room.create_room(
            api.CreateRoomRequest(
                name=room_name, agents=[api.RoomAgentDispatch(agent_name="named", metadata="cfg")]
            )
        )
        job = (await named.expect("assignment")).assignment.job
        assert (job.agent_name, job.metadata, job.room.name) == ("named", "cfg", room_name)
        await automatic.ping()
        assert automatic.inbox["availability"].empty()
        assert set(await dispatches(lkapi, room_name)) == {"named"}


async def test_simulate_job(devserver: DevServer) -> None:
    async with worker(devserver) as w:
        await w.send(
            agent_pb.WorkerMessage(
                simulate_job=agent_pb.SimulateJobRequest(
                    type=agent_pb.JT_ROOM, room=models.Room(name="simulated")
                )
            )
        )
        job = (await w.expect("assignment")).assignment.job
        assert job.room.name == "simulated" and job.room.sid.startswith("RM_")
        assert job.id.startswith("AJ_")


async def test_migrated_job_stays_with_the_reconnected_worker(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    first = worker(devserver, agent_name="m")
    await first.connect()
    dispatch = await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name="m", room=room_name)
    )
    job = (await first.expect("assignment")).assignment.job
    await first.aclose()
    async with worker(devserver, agent_name="m") as second:
        await second.send(agent_pb.WorkerMessage(migrate_job=agent_pb.MigrateJobRequest(job_ids=[job.id])))
        await second.ping()
        [state] = [j.state for j in (await dispatches(lkapi, room_name))["m"].state.jobs]
        assert state.worker_id == second.worker_id
        await lkapi.agent_dispatch.delete_dispatch(dispatch.id, room_name)
        assert (await second.expect("termination")).termination.job_id == job.id


async def test_delete_room_terminates_its_jobs(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    async with worker(devserver) as w:
        await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
        job = (await w.expect("assignment")).assignment.job
        await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))
        assert (await w.expect("termination")).termination.job_id == job.id


async def test_verbose_traces_every_agent_message(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="framepool.devserver.agents")
    async with DevServer(port=0, keys={API_KEY: API_SECRET}, verbose=True) as server, worker(server) as w:
        await w.ping()
    lines = [r.getMessage() for r in caplog.records if r.name == "framepool.devserver.agents"]
    assert any(line.startswith("worker ? -> register {") for line in lines)
    assert any(line.startswith(f"worker {w.worker_id} <- pong {{") for line in lines)
    assert sum(line.startswith(f"agent worker {w.worker_id} registered") for line in lines) == 1


# -- malformed input ----------------------------------------------------------------------------


async def raw_agent_socket(
    devserver: DevServer, session: aiohttp.ClientSession, token: str | None = None
) -> aiohttp.ClientWebSocketResponse:
    token = token or agent_token(API_KEY, API_SECRET)
    return await session.ws_connect(
        devserver.url + "/agent", headers={"Authorization": f"Bearer {token}"}, max_msg_size=0
    )


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    async with asyncio.timeout(EVENT):
        async for _ in ws:
            pass
    return ws.close_code


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\xff\xff\xff\xff\xff", 1007),
        ("{this is not json", 1007),
        (agent_pb.WorkerMessage(ping=agent_pb.WorkerPing(timestamp=1)).SerializeToString(), 1008),
        (b"\x00" * (MAX_MESSAGE_BYTES + 1), 1009),
    ],
)
async def test_bad_frames_close_only_that_worker(devserver: DevServer, frame: bytes | str, code: int) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await raw_agent_socket(devserver, session)
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)
        assert await closed_with(ws) == code
    async with worker(devserver) as healthy:  # the server carries on
        assert healthy.worker_id


async def test_json_worker_gets_json_answers(devserver: DevServer) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await raw_agent_socket(devserver, session)
        await ws.send_str('{"register": {"type": "JT_ROOM", "agentName": "json"}}')
        reply = await asyncio.wait_for(ws.receive_json(), EVENT)
        assert reply["register"]["workerId"].startswith("AW_")
        await ws.close()


@pytest.mark.parametrize(
    ("token", "status"),
    [
        (agent_token(API_KEY, API_SECRET, agent=False), 401),
        (agent_token(API_KEY, "wrong-secret"), 401),
        ("garbage", 401),
    ],
)
async def test_agent_endpoint_checks_the_token(devserver: DevServer, token: str, status: int) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await raw_agent_socket(devserver, session, token)
        assert err.value.status == status


# -- with real SDK participants -------------------------------------------------------------------


async def test_participant_job_when_a_participant_joins(devserver: DevServer, room_name: str) -> None:
    async with (
        worker(devserver, job_type=agent_pb.JT_PARTICIPANT) as w,
        joined(devserver, "alice", room_name),
    ):
        job = (await w.expect("assignment")).assignment.job
        assert job.type == agent_pb.JT_PARTICIPANT
        assert (job.room.name, job.participant.identity) == (room_name, "alice")


async def test_publisher_job_when_a_participant_first_publishes(devserver: DevServer, room_name: str) -> None:
    async with (
        worker(devserver, job_type=agent_pb.JT_PUBLISHER) as w,
        joined(devserver, "alice", room_name) as alice,
    ):
        await w.ping()
        assert w.inbox["availability"].empty()  # joining is not publishing
        _, feeding = await publish_tone(alice)
        try:
            offered = (await w.expect("availability")).availability.job
            job = (await w.expect("assignment")).assignment.job
            assert job.id == offered.id
            assert (job.type, job.participant.identity) == (agent_pb.JT_PUBLISHER, "alice")
            _, feeding_2 = await publish_tone(alice, "second")
            await stop(feeding_2)
            await w.ping()
            assert w.inbox["availability"].empty()  # one PUBLISHER job per participant, not per track
        finally:
            await stop(feeding)


async def test_agent_participant_leaving_terminates_its_job(
    devserver: DevServer, lkapi: api.LiveKitAPI, room_name: str
) -> None:
    async with worker(devserver, identity="agent-1") as w:
        await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
        assignment = (await w.expect("assignment")).assignment
        agent_room = rtc.Room()
        await asyncio.wait_for(agent_room.connect(assignment.url, assignment.token), EVENT)
        try:
            info = await lkapi.room.get_participant(
                api.RoomParticipantIdentity(room=room_name, identity="agent-1")
            )
            assert info.kind == models.ParticipantInfo.Kind.AGENT
        finally:
            await agent_room.disconnect()
        assert (await w.expect("termination")).termination.job_id == assignment.job.id


async def test_token_room_config_suppresses_automatic_dispatch(devserver: DevServer, room_name: str) -> None:
    config = api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name="from-token", metadata="tk")])
    token = (
        api.AccessToken(API_KEY, API_SECRET)
        .with_identity("alice")
        .with_room_config(config)
        .with_grants(api.VideoGrants(room_join=True, room=room_name))
        .to_jwt()
    )
    async with worker(devserver) as automatic, worker(devserver, agent_name="from-token") as named:
        sdk_room = rtc.Room()
        await asyncio.wait_for(sdk_room.connect(devserver.url, token), EVENT)
        try:
            job = (await named.expect("assignment")).assignment.job
            assert (job.type, job.metadata, job.room.name) == (agent_pb.JT_ROOM, "tk", room_name)
            await automatic.ping()
            assert automatic.inbox["availability"].empty()
        finally:
            await sdk_room.disconnect()
