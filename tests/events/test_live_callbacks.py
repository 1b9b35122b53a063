"""The emulator calling back into the gateway over real HTTP: the whole event path, end to end."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.server import Gateway
from service.store.base import StoreError
from tests.api.sessions_helpers import register_agent, voice_request
from tests.conftest import Emulator, eventually


@pytest.fixture
def emulator_overrides() -> dict[str, Any]:
    # Emulated delays run 100x faster; callback Timestamps still carry the emulated times.
    return {"time_scale": 0.01, "latency_seed": 7}


@pytest.fixture
async def wired(emulator: Emulator, gateway: Gateway, channel: grpc.aio.Channel) -> rpc.SessionServiceStub:
    url = f"http://127.0.0.1:{gateway.http_port}/v1/zego/callbacks"
    await emulator.set_callback_url(url)
    await register_agent(emulator)
    return rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]


async def watch_until_ended(channel: grpc.aio.Channel, session_id: str) -> list[epb.SessionEvent]:
    stub = erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
    request = eapi.WatchEventsRequest(
        filter=eapi.EventFilter(session_ids=[session_id]), start=eapi.START_POSITION_OLDEST
    )
    got: list[epb.SessionEvent] = []
    async with asyncio.timeout(20):
        async for message in stub.WatchEvents(request):
            if message.HasField("event"):
                got.append(message.event)
    return got  # the stream completed by itself after the session's end


async def turn(emulator: Emulator, instance_id: str, **latencies: int) -> None:
    await emulator.user_turn(instance_id, "How are you?", **latencies)


async def test_a_call_flows_from_emulator_callbacks_to_the_stream(
    wired: rpc.SessionServiceStub, emulator: Emulator, channel: grpc.aio.Channel, gateway: Gateway
) -> None:
    session = (await wired.CreateSession(voice_request(), timeout=5)).session

    async def active() -> bool:
        got = await wired.GetSession(api.GetSessionRequest(session_id=session.session_id), timeout=5)
        return bool(got.session.state == spb.SESSION_STATE_ACTIVE)

    await eventually(active, 10, every=0.02)  # AgentInstanceCreated

    def measured(n: int) -> Any:
        async def check() -> bool:
            got = await wired.GetSession(api.GetSessionRequest(session_id=session.session_id), timeout=5)
            return bool(got.session.turn_stats.turns == n)

        return check

    # Fast, then slow (2.5 s from the end of speech to speaking); the next turn starts only after
    # the previous one was measured, or it would barge in.
    await turn(emulator, session.agent_instance_id, asr_ms=300, llm_ttft_ms=600, tts_first_frame_ms=400)
    await eventually(measured(1), 10, every=0.02)  # the first turn
    await turn(emulator, session.agent_instance_id, asr_ms=500, llm_ttft_ms=1400, tts_first_frame_ms=600)
    await eventually(measured(2), 10, every=0.02)  # the second turn
    await wired.EndSession(api.EndSessionRequest(session_id=session.session_id), timeout=5)
    events = await watch_until_ended(channel, session.session_id)

    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "created" and kinds[-1] == "ended" and kinds.count("ended") == 1
    assert kinds.count("asr_result") == 2 and kinds.count("latency_budget_exceeded") == 1
    # Per session, cursor order is ZEGO's order: Sequence grows with the cursor.
    zego = [e for e in events if e.sequence]
    assert [e.sequence for e in zego] == sorted(e.sequence for e in zego)
    assert all(e.sequence > 2**53 for e in zego)
    ended = events[-1].ended
    assert not ended.synthesized and ended.reason == spb.END_REASON_ENDED_BY_CALLER
    assert ended.latency.total_cost_ms > 0  # ZEGO's LatencyData reached the subscriber
    breach = next(e for e in events if e.HasField("latency_budget_exceeded")).latency_budget_exceeded
    assert breach.trigger == "user_speech" and breach.latency_seconds > 1.5 and breach.budget_seconds == 1.5
    stats = (await wired.GetSession(api.GetSessionRequest(session_id=session.session_id), timeout=5)).session
    assert stats.turn_stats.budget_breaches == 1 and stats.turn_stats.max_latency_seconds > 1.5


async def test_zego_retries_deliver_at_least_once_and_store_once(
    wired: rpc.SessionServiceStub, emulator: Emulator, channel: grpc.aio.Channel, gateway: Gateway
) -> None:
    ingestor = gateway.core.ingestor
    real = ingestor.ingest
    failures = {"left": 2}

    async def flaky(body: bytes) -> Any:
        # The ledger fails twice: the gateway answers 503, so ZEGO (the emulator) retries.
        if failures["left"] > 0:
            failures["left"] -= 1
            raise StoreError("disk unavailable")
        return await real(body)

    ingestor.ingest = flaky  # type: ignore[method-assign]
    await emulator.callback_fault("duplicate", count=3)
    session = (await wired.CreateSession(voice_request(), timeout=5)).session
    await turn(emulator, session.agent_instance_id)

    async def idle_after_turn() -> bool:
        stub = erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
        listed = await stub.ListEvents(
            eapi.ListEventsRequest(filter=eapi.EventFilter(session_ids=[session.session_id])), timeout=5
        )
        statuses = [e.agent_status.status for e in listed.events if e.HasField("agent_status")]
        return epb.AGENT_STATE_IDLE in statuses

    await eventually(idle_after_turn, 10, every=0.02)  # the turn's callbacks
    stats = await emulator.callback_stats()
    assert stats["retried"] >= 2 and stats["duplicated"] == 3
    await wired.EndSession(api.EndSessionRequest(session_id=session.session_id), timeout=5)
    events = await watch_until_ended(channel, session.session_id)
    sequences = [e.sequence for e in events if e.sequence]
    assert len(sequences) == len(set(sequences))  # retried and duplicated callbacks: stored once
    assert [e.WhichOneof("payload") for e in events].count("created") == 1
