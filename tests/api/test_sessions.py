"""SessionService end to end over loopback: gRPC -> gateway -> ledger + signed HTTP -> emulator."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2

from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.server import Gateway
from tests.api.sessions_helpers import (
    AGENT_ID,
    PUBLIC_AVATAR,
    digital_human_request,
    register_agent,
    seconds,
    voice_request,
)
from tests.conftest import Emulator, gateway_settings, rich_error


@pytest.fixture
async def stub(channel: grpc.aio.Channel, emulator: Emulator) -> rpc.SessionServiceStub:
    await register_agent(emulator)
    return rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]


async def instances(emulator: Emulator) -> list[dict[str, Any]]:
    return list((await emulator.state())["instances"])


async def test_voice_session_lifecycle(stub: rpc.SessionServiceStub, emulator: Emulator) -> None:
    created = (
        await stub.CreateSession(voice_request(labels={"team": "care", "tier": "gold"}), timeout=5)
    ).session
    assert created.state == spb.SESSION_STATE_STARTING
    assert created.kind == spb.SESSION_KIND_VOICE
    assert len(created.agent_instance_id) == 19
    # Generated agent ids: within ZEGO's limits and unique per session.
    assert 0 < len(created.agent_user_id.encode()) <= 32
    assert created.agent_stream_id and created.agent_stream_id != created.agent_user_id
    assert dict(created.labels) == {"team": "care", "tier": "gold"}
    assert created.max_duration.seconds == 3600
    [upstream] = await instances(emulator)
    assert upstream["AgentInstanceId"] == created.agent_instance_id
    assert upstream["AgentUserId"] == created.agent_user_id

    got = await stub.GetSession(api.GetSessionRequest(session_id=created.session_id), timeout=5)
    assert got.session.turn_stats == spb.TurnStats(budget_seconds=1.5)  # no turn yet
    got.session.ClearField("turn_stats")
    assert got.session == created
    assert [(t.from_state, t.to_state) for t in got.transitions] == [
        (spb.SESSION_STATE_UNSPECIFIED, spb.SESSION_STATE_PENDING),
        (spb.SESSION_STATE_PENDING, spb.SESSION_STATE_STARTING),
    ]

    status = await stub.GetAgentStatus(api.GetAgentStatusRequest(session_id=created.session_id), timeout=5)
    assert status.status == epb.AGENT_STATE_IDLE  # the events' vocabulary

    ended = (await stub.EndSession(api.EndSessionRequest(session_id=created.session_id), timeout=5)).session
    assert ended.state == spb.SESSION_STATE_ENDED
    assert ended.end_reason == spb.END_REASON_ENDED_BY_CALLER
    assert ended.HasField("end_time")
    assert await instances(emulator) == []
    # Ending an ended session succeeds and returns it.
    again = (await stub.EndSession(api.EndSessionRequest(session_id=created.session_id), timeout=5)).session
    assert again == ended

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Speak(api.SpeakRequest(session_id=created.session_id, text="hi"), timeout=5)
    err = rich_error(info.value)
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SESSION_NOT_RUNNING")


async def test_digital_human_returns_raw_and_decoded_config(stub: rpc.SessionServiceStub) -> None:
    session = (await stub.CreateSession(digital_human_request(), timeout=5)).session
    assert session.kind == spb.SESSION_KIND_DIGITAL_HUMAN
    config = session.digital_human_config
    decoded = json.loads(base64.b64decode(config.raw))
    assert decoded["DigitalHumanId"] == PUBLIC_AVATAR
    assert config.digital_human_id == PUBLIC_AVATAR
    assert [(s.room_id, s.stream_id) for s in config.streams] == [("room_dh", session.agent_stream_id)]


async def test_live_digital_human_over_rtc_and_cdn(stub: rpc.SessionServiceStub, emulator: Emulator) -> None:
    rtc = await stub.CreateSession(
        api.CreateSessionRequest(
            agent_id=AGENT_ID,
            live_digital_human=api.LiveDigitalHumanSpec(digital_human_id=PUBLIC_AVATAR),
            rtc=api.RtcSpec(room_id="live_room"),
        ),
        timeout=5,
    )
    cdn = await stub.CreateSession(
        api.CreateSessionRequest(
            agent_id=AGENT_ID,
            live_digital_human=api.LiveDigitalHumanSpec(
                digital_human_id=PUBLIC_AVATAR, cdn_url="rtmp://push.example.com/live/key"
            ),
        ),
        timeout=5,
    )
    assert rtc.session.kind == cdn.session.kind == spb.SESSION_KIND_LIVE_DIGITAL_HUMAN
    assert cdn.session.cdn_url == "rtmp://push.example.com/live/key"
    assert len(await instances(emulator)) == 2
    spoken = await stub.Speak(api.SpeakRequest(session_id=rtc.session.session_id, text="Welcome"), timeout=5)
    assert spoken.round > 0
    capacity = await stub.GetCapacity(api.GetCapacityRequest(), timeout=5)
    pools = {p.pool: p for p in capacity.pools}
    assert pools["digital_human"].in_use == 2 and pools["digital_human"].limit == 10
    assert set(pools["digital_human"].kinds) == {
        spb.SESSION_KIND_DIGITAL_HUMAN,
        spb.SESSION_KIND_LIVE_DIGITAL_HUMAN,
    }
    assert pools["voice"].in_use == 0


@pytest.fixture
def emulator_overrides() -> dict[str, Any]:
    # ZEGO's own cap is higher here, so only the gateway's admission control can hold the line.
    return {"voice_instance_limit": 100}


async def test_admission_exactly_limit_succeed_under_concurrency(
    stub: rpc.SessionServiceStub, emulator: Emulator
) -> None:
    requests = [voice_request(user=f"u{i}", room=f"r{i}") for i in range(50)]
    results = await asyncio.gather(
        *(stub.CreateSession(r, timeout=10) for r in requests), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, api.CreateSessionResponse)]
    rejected = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 10 and len(rejected) == 40
    assert len(await instances(emulator)) == 10  # ZEGO never saw an 11th
    err = rich_error(rejected[0])
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.reason == "CAPACITY_EXHAUSTED"
    quota = err.get(error_details_pb2.QuotaFailure)
    assert "10 of 10" in quota.violations[0].description
    assert err.get(error_details_pb2.RetryInfo).retry_delay.seconds > 0
    capacity = await stub.GetCapacity(api.GetCapacityRequest(), timeout=5)
    voice = next(p for p in capacity.pools if p.pool == "voice")
    assert (voice.limit, voice.in_use, voice.pending) == (10, 10, 10)
    # Ending one frees exactly one slot.
    await stub.EndSession(api.EndSessionRequest(session_id=ok[0].session.session_id), timeout=5)
    await stub.CreateSession(voice_request(user="late", room="late"), timeout=5)


async def test_request_id_is_idempotent_concurrently_and_checks_the_body(
    stub: rpc.SessionServiceStub, emulator: Emulator
) -> None:
    request = voice_request(request_id=str(uuid.uuid4()))
    first, second = await asyncio.gather(
        stub.CreateSession(request, timeout=5), stub.CreateSession(request, timeout=5)
    )
    third = await stub.CreateSession(request, timeout=5)
    assert first.session.session_id == second.session.session_id == third.session.session_id
    assert first.session.agent_instance_id == third.session.agent_instance_id != ""
    assert len(await instances(emulator)) == 1

    other = voice_request(user="someone_else", request_id=request.request_id)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateSession(other, timeout=5)
    err = rich_error(info.value)
    assert (err.code, err.reason, err.field_paths) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
        ["request_id"],
    )


async def test_sessions_and_request_ids_survive_a_restart(
    emulator: Emulator, tmp_path: Path, database_url: str | None
) -> None:
    await register_agent(emulator)
    settings = gateway_settings(emulator, tmp_path / "ledger.db", database_url)
    request = voice_request(request_id="restart-1")
    async with Gateway(settings) as gw:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            before = (await rpc.SessionServiceStub(ch).CreateSession(request, timeout=5)).session  # type: ignore[no-untyped-call]
    # Shutdown never ends a session.
    assert len(await instances(emulator)) == 1
    async with Gateway(settings) as gw:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            stub = rpc.SessionServiceStub(ch)  # type: ignore[no-untyped-call]
            after = (await stub.CreateSession(request, timeout=5)).session
            got = (
                await stub.GetSession(api.GetSessionRequest(session_id=before.session_id), timeout=5)
            ).session
    assert after.session_id == before.session_id
    assert after.agent_instance_id == before.agent_instance_id
    assert got.state in (spb.SESSION_STATE_STARTING, spb.SESSION_STATE_ACTIVE)
    assert len(await instances(emulator)) == 1


async def test_list_filters_and_pages_newest_first(stub: rpc.SessionServiceStub) -> None:
    ids = []
    for i in range(5):
        labels = {"env": "prod" if i % 2 == 0 else "dev"}
        if i == 4:
            labels["vip"] = "yes"
        session = (
            await stub.CreateSession(
                voice_request(user=f"u{i}", room=f"room{i % 2}", labels=labels), timeout=5
            )
        ).session
        ids.append(session.session_id)
    dh = (await stub.CreateSession(digital_human_request(), timeout=5)).session
    await stub.EndSession(api.EndSessionRequest(session_id=ids[0]), timeout=5)

    async def listing(**kwargs: Any) -> list[str]:
        collected: list[str] = []
        token = ""
        for _ in range(10):  # bounded
            page = await stub.ListSessions(
                api.ListSessionsRequest(page_size=2, page_token=token, **kwargs), timeout=5
            )
            assert len(page.sessions) <= 2
            collected.extend(s.session_id for s in page.sessions)
            token = page.next_page_token
            if not token:
                return collected
        raise AssertionError("paging did not end")

    assert await listing() == [dh.session_id, *reversed(ids)]
    assert await listing(kinds=[spb.SESSION_KIND_DIGITAL_HUMAN]) == [dh.session_id]
    assert await listing(room_id="room0", kinds=[spb.SESSION_KIND_VOICE]) == [ids[4], ids[2], ids[0]]
    assert await listing(states=[spb.SESSION_STATE_ENDED]) == [ids[0]]
    assert await listing(label_selector="env=prod,!vip") == [ids[2], ids[0]]
    assert await listing(label_selector="vip") == [ids[4]]
    assert await listing(label_selector="env!=prod", agent_id=AGENT_ID) == [dh.session_id, ids[3], ids[1]]

    first = await stub.ListSessions(api.ListSessionsRequest(page_size=1), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListSessions(
            api.ListSessionsRequest(page_size=1, page_token=first.next_page_token, room_id="x")
        )
    assert rich_error(info.value).field_paths == ["page_token"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListSessions(api.ListSessionsRequest(label_selector="bad key!"))
    assert rich_error(info.value).field_paths == ["label_selector"]


async def test_in_call_control(stub: rpc.SessionServiceStub) -> None:
    sid = (await stub.CreateSession(voice_request(), timeout=5)).session.session_id
    r1 = (await stub.SendText(api.SendTextRequest(session_id=sid, text="What's new?"), timeout=5)).round
    r2 = (
        await stub.Speak(
            api.SpeakRequest(
                session_id=sid,
                text="Hello there",
                priority=api.SPEECH_PRIORITY_HIGH,
                same_priority_option=api.SAME_PRIORITY_OPTION_ENQUEUE,
            ),
            timeout=5,
        )
    ).round
    assert r2 > r1 > 0
    assert (await stub.Interrupt(api.InterruptRequest(session_id=sid), timeout=5)).round > 0

    await stub.ResetContext(api.ResetContextRequest(session_id=sid), timeout=5)
    await stub.AppendContext(
        api.AppendContextRequest(
            session_id=sid,
            messages=[
                spb.ChatMessage(role=spb.CHAT_ROLE_USER, content="hi"),
                spb.ChatMessage(role=spb.CHAT_ROLE_ASSISTANT, content="hello"),
            ],
        ),
        timeout=5,
    )
    context = await stub.GetContext(api.GetContextRequest(session_id=sid), timeout=5)
    assert [(m.role, m.content) for m in context.messages] == [
        (spb.CHAT_ROLE_USER, "hi"),
        (spb.CHAT_ROLE_ASSISTANT, "hello"),
    ]
    assert context.total_size == 2

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Speak(api.SpeakRequest(session_id=sid, text="x" * 301), timeout=5)
    assert rich_error(info.value).field_paths == ["text"]
    # Not in walkie-talkie mode: ZEGO's 410001042, surfaced as a failed precondition.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.StartListening(api.StartListeningRequest(session_id=sid, sequence=1), timeout=5)
    err = rich_error(info.value)
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_STATE_CONFLICT")
    assert err.get(error_details_pb2.ErrorInfo).metadata["zego_code"] == "410001042"


async def test_walkie_talkie_listening(stub: rpc.SessionServiceStub) -> None:
    request = voice_request()
    request.advanced_config.communication_mode = api.COMMUNICATION_MODE_WALKIE_TALKIE
    sid = (await stub.CreateSession(request, timeout=5)).session.session_id
    start = await stub.StartListening(api.StartListeningRequest(session_id=sid, sequence=1), timeout=5)
    stop = await stub.StopListening(api.StopListeningRequest(session_id=sid, sequence=2), timeout=5)
    assert stop.round >= start.round > 0
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.StopListening(api.StopListeningRequest(session_id=sid, sequence=1), timeout=5)
    assert rich_error(info.value).get(error_details_pb2.ErrorInfo).metadata["zego_code"] == "410001043"


async def test_update_session(stub: rpc.SessionServiceStub, emulator: Emulator) -> None:
    sid = (await stub.CreateSession(voice_request(), timeout=5)).session.session_id
    updated = await stub.UpdateSession(
        api.UpdateSessionRequest(
            session_id=sid,
            user_stream_id="new_stream",
            update_mask=field_mask_pb2.FieldMask(paths=["user_stream_id"]),
        ),
        timeout=5,
    )
    assert updated.session.user_stream_id == "new_stream"
    bad = api.UpdateSessionRequest(
        session_id=sid, update_mask=field_mask_pb2.FieldMask(paths=["tts", "labels"])
    )
    bad.tts.vendor = "ByteDance"
    bad.tts.app.update({"token": "t"})
    bad.tts.terminator_text = "#"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.UpdateSession(bad, timeout=5)
    assert rich_error(info.value).field_paths == ["update_mask.paths[1]", "tts.terminator_text"]


@pytest.mark.parametrize(
    ("mutate", "paths"),
    [
        (lambda r: r.ClearField("agent_id"), ["agent_id"]),
        (lambda r: setattr(r, "agent_id", "bad agent*"), ["agent_id"]),
        (lambda r: r.ClearField("voice"), ["kind"]),
        (lambda r: setattr(r, "user_id", ""), ["user_id"]),
        (lambda r: setattr(r, "user_id", "u" * 33), ["user_id"]),
        (lambda r: setattr(r, "user_id", "bad user"), ["user_id"]),
        (lambda r: r.rtc.ClearField("room_id"), ["rtc.room_id"]),
        (lambda r: setattr(r.rtc, "user_stream_id", "s" * 129), ["rtc.user_stream_id"]),
        (lambda r: setattr(r.rtc, "agent_user_id", "user_1"), ["rtc.agent_user_id"]),
        (lambda r: r.max_duration.CopyFrom(seconds(10**6)), ["max_duration"]),
        (lambda r: r.labels.update({"bad key": "v"}), ["labels['bad key']"]),
        (lambda r: setattr(r, "request_id", "r" * 65), ["request_id"]),
        (lambda r: setattr(r.vad, "silence_segmentation_ms", 50), ["vad.silence_segmentation_ms"]),
        (lambda r: r.advanced_config.max_idle_time.CopyFrom(seconds(5)), ["advanced_config.max_idle_time"]),
        (lambda r: r.message_history.messages.add(content="no role"), ["message_history.messages[0].role"]),
        (lambda r: setattr(r.llm, "url", "https://x"), ["llm.api_key", "llm.model"]),
    ],
)
async def test_bad_create_input_never_reaches_zego(
    stub: rpc.SessionServiceStub, emulator: Emulator, mutate: Any, paths: list[str]
) -> None:
    request = voice_request()
    mutate(request)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateSession(request, timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.field_paths == paths
    assert await instances(emulator) == []
    listed = await stub.ListSessions(api.ListSessionsRequest(), timeout=5)
    assert list(listed.sessions) == []  # nothing was reserved either


async def test_zego_rejection_fails_the_session_and_frees_the_slot(
    stub: rpc.SessionServiceStub, emulator: Emulator
) -> None:
    await emulator.fault(action="CreateAgentInstance", code=410001003, count=1)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateSession(voice_request(), timeout=5)
    assert rich_error(info.value).get(error_details_pb2.ErrorInfo).metadata["zego_code"] == "410001003"
    [failed] = (await stub.ListSessions(api.ListSessionsRequest(), timeout=5)).sessions
    assert failed.state == spb.SESSION_STATE_FAILED
    assert failed.end_reason == spb.END_REASON_CREATE_FAILED
    assert failed.zego_code == 410001003 and not failed.possible_leak
    capacity = await stub.GetCapacity(api.GetCapacityRequest(), timeout=5)
    assert next(p for p in capacity.pools if p.pool == "voice").in_use == 0


async def test_missing_session_and_bad_ids(stub: rpc.SessionServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetSession(api.GetSessionRequest(session_id="nope"), timeout=5)
    err = rich_error(info.value)
    assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    for call in (
        stub.GetSession(api.GetSessionRequest(), timeout=5),
        stub.EndSession(api.EndSessionRequest(), timeout=5),
        stub.Interrupt(api.InterruptRequest(), timeout=5),
        stub.GetContext(api.GetContextRequest(), timeout=5),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert rich_error(info.value).field_paths == ["session_id"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.StartListening(api.StartListeningRequest(session_id="s", sequence=0), timeout=5)
    assert rich_error(info.value).field_paths == ["sequence"]
