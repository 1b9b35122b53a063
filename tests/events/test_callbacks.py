"""POST /v1/zego/callbacks: verification, dedupe, durable storage and session state."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.server import Gateway
from tests.api.sessions_helpers import register_agent, voice_request
from tests.conftest import Emulator
from tests.events.helpers import callback, post


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}", timeout=5) as client:
        yield client


@pytest.fixture
async def session(channel: grpc.aio.Channel, emulator: Emulator) -> spb.Session:
    await register_agent(emulator)
    stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    return (await stub.CreateSession(voice_request(), timeout=5)).session


async def events(channel: grpc.aio.Channel, **filters: object) -> list[epb.SessionEvent]:
    stub = erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
    listed = await stub.ListEvents(
        eapi.ListEventsRequest(filter=eapi.EventFilter(**filters), include_raw=True), timeout=5
    )
    return list(listed.events)


async def get_session(channel: grpc.aio.Channel, session_id: str) -> spb.Session:
    stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    return (await stub.GetSession(api.GetSessionRequest(session_id=session_id), timeout=5)).session


async def test_created_then_deleted_drive_the_session(
    http: httpx.AsyncClient, channel: grpc.aio.Channel, session: spb.Session
) -> None:
    iid = session.agent_instance_id
    created = callback("AgentInstanceCreated", iid, {"CreatedTimestamp": 1745502312982})
    assert (await post(http, created)).status_code == 200
    assert (await get_session(channel, session.session_id)).state == spb.SESSION_STATE_ACTIVE

    latency = {"LLMTTFT": 613, "LLMTPS": 11.493, "TTSAudioFirstFrameTime": 783, "TotalCost": 1693}
    deleted = callback(
        "AgentInstanceDeleted", iid, {"Code": 1202, "DeletedTimestamp": 1, "LatencyData": latency}
    )
    response = await post(http, deleted)
    assert response.status_code == 200 and response.json()["result"] == "accepted"
    ended = await get_session(channel, session.session_id)
    assert ended.state == spb.SESSION_STATE_ENDED
    assert ended.end_reason == spb.END_REASON_USER_ABSENT
    assert ended.zego_code == 1202

    logged = await events(channel, session_ids=[session.session_id])
    assert [e.WhichOneof("payload") for e in logged] == ["created", "ended"]
    assert logged[0].sequence == created["Sequence"] and logged[0].sequence > 2**53  # exact int64
    assert logged[1].ended.latency.total_cost_ms == 1693
    assert logged[1].ended.reason == spb.END_REASON_USER_ABSENT and not logged[1].ended.synthesized
    assert json.loads(logged[1].raw_json)["Sequence"] == deleted["Sequence"]
    assert logged[0].cursor < logged[1].cursor
    assert dict(logged[0].labels) == dict(session.labels)


async def test_retries_are_acknowledged_and_stored_once(
    http: httpx.AsyncClient, channel: grpc.aio.Channel, session: spb.Session
) -> None:
    body = callback("ASRResult", session.agent_instance_id, {"UserId": "user_1", "Round": 7, "Text": "hello"})
    first, again = await post(http, body), await post(http, body)
    assert (first.json()["result"], again.json()["result"]) == ("accepted", "duplicate")
    assert first.status_code == again.status_code == 200
    # A retry that ZEGO re-signed (new nonce and timestamp) is the same event too.
    resigned = callback(
        "ASRResult", session.agent_instance_id, {"UserId": "user_1", "Round": 7, "Text": "hello"},
        sequence=body["Sequence"],
    )  # fmt: skip
    assert (await post(http, resigned)).json()["result"] == "duplicate"
    asr = await events(channel, event_types=[epb.EVENT_TYPE_ASR_RESULT])
    assert [(e.asr_result.text, e.round) for e in asr] == [("hello", 7)]


@pytest.mark.parametrize(
    ("mutate", "status", "result"),
    [
        (lambda b: b.update(Signature="0" * 40), 401, "bad_signature"),
        (lambda b: b.pop("Signature"), 401, "bad_signature"),
        (lambda b: b.update(Event="NoSuchEvent"), 400, "malformed"),
        (lambda b: b.update(Sequence="x"), 400, "malformed"),
        (lambda b: b.pop("AgentInstanceId"), 400, "malformed"),
        (lambda b: b.update(Data=[1, 2]), 400, "malformed"),
    ],
)
async def test_bad_callbacks_are_rejected_and_nothing_is_stored(
    http: httpx.AsyncClient, channel: grpc.aio.Channel, mutate: object, status: int, result: str
) -> None:
    body = callback("LLMResult", "1912124734317838336", {"Round": 1, "Text": "x"})
    mutate(body)  # type: ignore[operator]
    response = await post(http, body)
    assert (response.status_code, response.json()["result"]) == (status, result)
    assert await events(channel) == []


async def test_stale_replayed_malformed_and_oversized(
    http: httpx.AsyncClient, channel: grpc.aio.Channel
) -> None:
    stale = callback("LLMResult", "1", {"Round": 1}, timestamp_ms=int((time.time() - 3600) * 1000))
    assert (await post(http, stale)).json()["result"] == "stale"
    original = callback("LLMResult", "1", {"Round": 1, "Text": "a"})
    assert (await post(http, original)).status_code == 200
    forged = dict(original, Data={"Round": 1, "Text": "injected"}, Sequence=original["Sequence"] + 1)
    response = await post(http, forged)  # same Nonce and Signature, another body
    assert (response.status_code, response.json()["result"]) == (409, "replayed")
    assert (await post(http, b"{not json")).status_code == 400
    assert (await post(http, b"[]")).status_code == 400
    huge = callback("LLMResult", "1", {"Round": 1, "Text": "x" * 2_000_000})
    assert (await post(http, huge)).status_code == 413
    assert [e.llm_result.text for e in await events(channel)] == ["a"]


async def test_unknown_instances_are_kept(
    http: httpx.AsyncClient, channel: grpc.aio.Channel, emulator: Emulator
) -> None:
    await register_agent(emulator)
    early = callback("LLMResult", "1999999999999999999", {"Round": 3, "Text": "early"})
    assert (await post(http, early)).status_code == 200
    [kept] = await events(channel)
    assert kept.session_id == "" and kept.agent_instance_id == "1999999999999999999"


async def test_exceptions_are_recorded_on_the_session(
    http: httpx.AsyncClient, channel: grpc.aio.Channel, session: spb.Session
) -> None:
    message = "The API key in the request is missing or invalid"
    body = callback("Exception", session.agent_instance_id, {"Code": 2203, "Message": message, "Round": 2})
    assert (await post(http, body)).status_code == 200
    got = await get_session(channel, session.session_id)
    assert (got.exception_count, got.last_exception_code, got.last_exception_message) == (1, 2203, message)
    [exc] = await events(channel, event_types=[epb.EVENT_TYPE_EXCEPTION])
    assert exc.exception.category == epb.EXCEPTION_CATEGORY_LLM


async def test_exactly_one_terminal_event_when_zego_confirms_our_end(
    http: httpx.AsyncClient, channel: grpc.aio.Channel, session: spb.Session
) -> None:
    stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    await stub.EndSession(api.EndSessionRequest(session_id=session.session_id), timeout=5)
    late = callback("AgentInstanceDeleted", session.agent_instance_id, {"Code": 0, "DeletedTimestamp": 1})
    assert (await post(http, late)).status_code == 200
    ended = await events(channel, session_ids=[session.session_id], event_types=[epb.EVENT_TYPE_ENDED])
    assert len(ended) == 1
    assert ended[0].ended.reason == spb.END_REASON_ENDED_BY_CALLER


async def test_an_unconfirmed_create_is_adopted_and_deleted_when_its_callback_arrives(
    http: httpx.AsyncClient, channel: grpc.aio.Channel, emulator: Emulator
) -> None:
    await register_agent(emulator)
    stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    await emulator.fault(action="CreateAgentInstance", mode="drop", count=1)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateSession(voice_request(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    [lost] = (await stub.ListSessions(api.ListSessionsRequest(), timeout=5)).sessions
    assert (lost.end_reason, lost.possible_leak) == (spb.END_REASON_CREATE_UNCONFIRMED, True)

    # ZEGO did start it after all (we never heard): it joins the room and says so.
    created = await emulator.call(
        "CreateAgentInstance",
        {
            "AgentId": "helper-agent",
            "UserId": "user_1",
            "RTC": {
                "RoomId": lost.room_id,
                "AgentUserId": lost.agent_user_id,
                "AgentStreamId": lost.agent_stream_id,
                "UserStreamId": lost.user_stream_id,
            },
        },
    )
    orphan = created["Data"]["AgentInstanceId"]
    body = callback(
        "AgentInstanceCreated", orphan, {}, room_id=lost.room_id, agent_user_id=lost.agent_user_id
    )
    assert (await post(http, body)).status_code == 200
    async with asyncio.timeout(5):
        while (await emulator.state())["instances"]:
            await asyncio.sleep(0.02)
    got = await get_session(channel, lost.session_id)
    assert (got.possible_leak, got.end_reason, got.agent_instance_id) == (
        False,
        spb.END_REASON_REAPED_ORPHAN,
        orphan,
    )
    # Its terminal event was the one already delivered; the late Created is not delivered.
    delivered = await events(channel, session_ids=[lost.session_id])
    assert [e.WhichOneof("payload") for e in delivered] == ["ended"]
