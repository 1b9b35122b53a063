"""RTC identity clashes, end to end: the emulator plays them out as ZEGO does (created, Exception,
deleted) and delivers real signed callbacks; agentgw reports them as events and ends the session
with a clear reason."""

from __future__ import annotations

import asyncio

import grpc

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.server import Gateway
from tests.api.sessions_helpers import register_agent, voice_request
from tests.conftest import Emulator


async def ended(stub: rpc.SessionServiceStub, session_id: str, within: float = 10.0) -> spb.Session:
    """Poll (bounded) until the session is ENDED."""
    async with asyncio.timeout(within):
        while True:
            session = (await stub.GetSession(api.GetSessionRequest(session_id=session_id), timeout=5)).session
            if session.state == spb.SESSION_STATE_ENDED:
                return session
            await asyncio.sleep(0.05)


async def create(stub: rpc.SessionServiceStub, user: str, room: str, **rtc: str) -> spb.Session:
    """A voice session with explicit agent RTC ids (agentgw generates unique ones otherwise)."""
    spec = api.RtcSpec(room_id=room, user_stream_id=f"{user}_s", **rtc)
    return (await stub.CreateSession(voice_request(user, room, rtc=spec), timeout=5)).session


async def payloads(channel: grpc.aio.Channel, session_id: str) -> list[str]:
    stub = erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
    listed = await stub.ListEvents(
        eapi.ListEventsRequest(filter=eapi.EventFilter(session_ids=[session_id])), timeout=5
    )
    return [e.WhichOneof("payload") or "" for e in listed.events]


async def test_kicked_and_failed_sessions_end_with_their_reasons(
    gateway: Gateway, channel: grpc.aio.Channel, emulator: Emulator
) -> None:
    await register_agent(emulator)
    await emulator.set_callback_url(f"http://127.0.0.1:{gateway.http_port}/v1/zego/callbacks")
    stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]

    first = await create(stub, "u1", "room_a", agent_user_id="shared_agent", agent_stream_id="a1")
    # The same agent user id: ZEGO lets the create through and kicks the earlier instance (1203).
    second = await create(stub, "u2", "room_b", agent_user_id="shared_agent", agent_stream_id="a2")
    kicked = await ended(stub, first.session_id)
    assert kicked.end_reason == spb.END_REASON_AGENT_KICKED and kicked.zego_code == 1203
    assert (await payloads(channel, first.session_id))[-2:] == ["exception", "ended"]

    # The same agent stream id: the later instance fails to publish (1206).
    third = await create(stub, "u3", "room_c", agent_stream_id="a2")
    failed = await ended(stub, third.session_id)
    assert failed.end_reason == spb.END_REASON_UPSTREAM_RTC_ERROR and failed.zego_code == 1206
    assert (await payloads(channel, third.session_id))[-2:] == ["exception", "ended"]
    # The instance holding the stream keeps running.
    still = (await stub.GetSession(api.GetSessionRequest(session_id=second.session_id), timeout=5)).session
    assert still.state in (spb.SESSION_STATE_STARTING, spb.SESSION_STATE_ACTIVE)
