"""Admission counts what may be running (issue 16 §4), over gRPC against the emulator.

Creates whose answers are lost (timeouts, answers that come after the client gave up) keep their
slots as ``suspect`` until ZEGO confirms the instance gone, so ZEGO never sees more creates than the
cap; a retry of a create ZEGO refused with a retryable code is a new attempt (AIP-155).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2

from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.server import Gateway
from tests.api.sessions_helpers import register_agent, voice_request
from tests.conftest import Emulator, eventually, rich_error
from tests.events.helpers import callback, post

CAP = 10


@pytest.fixture
def emulator_overrides() -> dict[str, Any]:
    # ZEGO's own cap is far above the gateway's, so only admission control can hold the line.
    return {"voice_instance_limit": 100}


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"voice_limit": CAP, "zego_timeout_seconds": 0.5}


@pytest.fixture
async def stub(channel: grpc.aio.Channel, emulator: Emulator) -> rpc.SessionServiceStub:
    await register_agent(emulator)
    return rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}", timeout=5) as client:
        yield client


async def voice_pool(stub: rpc.SessionServiceStub) -> api.PoolCapacity:
    capacity = await stub.GetCapacity(api.GetCapacityRequest(), timeout=5)
    return next(p for p in capacity.pools if p.pool == "voice")


async def faults_left(emulator: Emulator) -> int:
    return sum(int(f["count"]) for f in (await emulator.state())["faults"])


async def test_no_create_beyond_the_cap_while_unconfirmed_instances_may_run(
    stub: rpc.SessionServiceStub, emulator: Emulator
) -> None:
    # Ten creates whose answers never arrive: five time out, five are answered after the client gave up
    # (ZEGO did create those: lost answers).
    await emulator.fault(action="CreateAgentInstance", mode="timeout", count=CAP // 2)
    await emulator.fault(action="CreateAgentInstance", latency_ms=1500, count=CAP // 2)
    first = [voice_request(f"u{n}", f"r{n}", request_id=f"req-{n}") for n in range(CAP)]
    outcomes = await asyncio.gather(
        *(stub.CreateSession(r, timeout=10) for r in first), return_exceptions=True
    )
    assert all(isinstance(o, grpc.aio.AioRpcError) for o in outcomes)
    assert {o.code() for o in outcomes if isinstance(o, grpc.aio.AioRpcError)} == {
        grpc.StatusCode.UNAVAILABLE
    }
    pool = await voice_pool(stub)
    assert (pool.limit, pool.in_use, pool.pending, pool.suspect) == (CAP, CAP, 0, CAP)

    # From here on any create that reaches ZEGO would consume this fault: count them.
    await emulator.fault(action="CreateAgentInstance", code=410000001, count=1000)
    for n in range(20):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreateSession(voice_request(f"n{n}", f"rn{n}", request_id=f"new-{n}"), timeout=5)
        err = rich_error(info.value)
        assert (err.code, err.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "CAPACITY_EXHAUSTED")
        assert err.get(error_details_pb2.RetryInfo).retry_delay.ToNanoseconds() > 0
    for request in first:
        # The same request_id: its create may have run, so it is replayed, never sent again.
        replayed = (await stub.CreateSession(request, timeout=5)).session
        assert replayed.state == spb.SESSION_STATE_FAILED and replayed.possible_leak
        assert replayed.end_reason == spb.END_REASON_CREATE_UNCONFIRMED
    assert await faults_left(emulator) == 1000  # ZEGO saw no create beyond the first ten

    async def lost_answers_created() -> bool:  # ZEGO creates them when their held answers go out
        return len((await emulator.state())["instances"]) >= CAP // 2

    await eventually(lost_answers_created, every=0.05)
    assert len((await emulator.state())["instances"]) == CAP // 2  # the lost answers' instances
    listed = await stub.ListSessions(api.ListSessionsRequest(), timeout=5)
    assert sum(s.possible_leak for s in listed.sessions) == CAP


async def test_list_sessions_finds_the_possible_leaks(
    stub: rpc.SessionServiceStub, emulator: Emulator
) -> None:
    healthy = (await stub.CreateSession(voice_request("ok", "rok"), timeout=5)).session
    await emulator.fault(action="CreateAgentInstance", mode="drop", count=3)
    for n in range(3):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.CreateSession(voice_request(f"l{n}", f"rl{n}"), timeout=5)
    first = await stub.ListSessions(api.ListSessionsRequest(possible_leak=True, page_size=2), timeout=5)
    rest = await stub.ListSessions(
        api.ListSessionsRequest(possible_leak=True, page_size=2, page_token=first.next_page_token), timeout=5
    )
    leaks = [*first.sessions, *rest.sessions]
    assert len(leaks) == 3 and all(s.possible_leak for s in leaks) and not rest.next_page_token
    assert healthy.session_id not in {s.session_id for s in leaks}
    everything = await stub.ListSessions(api.ListSessionsRequest(), timeout=5)
    assert len(everything.sessions) == 4
    # A token of one filter is refused by another.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListSessions(api.ListSessionsRequest(page_token=first.next_page_token), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_agent_instance_deleted_frees_a_suspect_slot(
    stub: rpc.SessionServiceStub, emulator: Emulator, http: httpx.AsyncClient
) -> None:
    await emulator.fault(action="CreateAgentInstance", mode="drop", count=1)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.CreateSession(voice_request(request_id="lost-1"), timeout=5)
    assert (await voice_pool(stub)).suspect == 1
    [lost] = (await stub.ListSessions(api.ListSessionsRequest(), timeout=5)).sessions

    # ZEGO reports an instance with the session's generated ids deleted: it is gone.
    body = callback(
        "AgentInstanceDeleted",
        "1912122918452641792",
        {"Code": 1202, "DeletedTimestamp": 1745502312982},
        room_id=lost.room_id,
        agent_user_id=lost.agent_user_id,
    )
    assert (await post(http, body)).status_code == 200
    pool = await voice_pool(stub)
    assert (pool.in_use, pool.suspect) == (0, 0)
    # Now that ZEGO confirmed no instance, a retry with the same request_id is a new attempt.
    retried = (await stub.CreateSession(voice_request(request_id="lost-1"), timeout=5)).session
    assert retried.state == spb.SESSION_STATE_STARTING and retried.session_id != lost.session_id


async def test_a_retry_after_unavailable_with_retry_info_creates_the_session(
    stub: rpc.SessionServiceStub, emulator: Emulator
) -> None:
    await emulator.fault(action="CreateAgentInstance", code=410000001, count=1)  # ZEGO system error
    request = voice_request(request_id="retry-me")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateSession(request, timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert err.get(error_details_pb2.RetryInfo).retry_delay.ToNanoseconds() > 0
    session = (await stub.CreateSession(request, timeout=5)).session
    assert session.state == spb.SESSION_STATE_STARTING and session.request_id == "retry-me"
    assert (await stub.CreateSession(request, timeout=5)).session.session_id == session.session_id
    assert len((await emulator.state())["instances"]) == 1
