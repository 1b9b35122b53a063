"""An orphan nobody knows the id of is cleared when ZEGO ends it for idleness (issue 16 §3).

A create whose answer was lost, and whose AgentInstanceCreated never arrived (ZEGO gave up on it,
as after an outage longer than its 62 s of callback retries), leaves an instance at ZEGO that the
gateway cannot name: no call can end it. ZEGO ends it once its user has been absent for
``MaxIdleTime`` and reports AgentInstanceDeleted (1202) with the agent user id and room the
gateway generated; that frees the suspect slot, and the request_id may then be retried.
Real callbacks from the emulator over loopback HTTP, with emulated time 100x faster (ZEGO's
default MaxIdleTime of 120 s lasts 1.2 s).
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.server import Gateway
from tests.api.sessions_helpers import register_agent, voice_request
from tests.conftest import Emulator, eventually


@pytest.fixture
def emulator_overrides() -> dict[str, Any]:
    return {"time_scale": 0.01}


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    # One slot: while the orphan may run, nothing else is admitted.
    return {"voice_limit": 1, "zego_timeout_seconds": 0.5}


@pytest.fixture
async def stub(emulator: Emulator, gateway: Gateway, channel: grpc.aio.Channel) -> rpc.SessionServiceStub:
    url = f"http://127.0.0.1:{gateway.http_port}/v1/zego/callbacks"
    await emulator.set_callback_url(url)
    await register_agent(emulator)
    return rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]


async def voice_pool(stub: rpc.SessionServiceStub) -> api.PoolCapacity:
    capacity = await stub.GetCapacity(api.GetCapacityRequest(), timeout=5)
    return next(p for p in capacity.pools if p.pool == "voice")


async def test_an_unknown_orphan_is_cleared_when_zego_ends_it_for_idleness(
    stub: rpc.SessionServiceStub, emulator: Emulator
) -> None:
    # ZEGO creates the instance, but its answer comes after the gateway gave up (0.5 s), and its
    # AgentInstanceCreated is lost for good.
    await emulator.callback_fault("drop", event="AgentInstanceCreated", count=1)
    await emulator.fault(action="CreateAgentInstance", latency_ms=1000, count=1)
    request = voice_request("caller", "room_idle", request_id="idle-1")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateSession(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE

    async def zego_runs_it() -> bool:
        return len((await emulator.state())["instances"]) == 1

    await eventually(zego_runs_it, 10, every=0.05)  # ZEGO created the instance
    [lost] = (await stub.ListSessions(api.ListSessionsRequest(), timeout=5)).sessions
    assert lost.possible_leak and not lost.agent_instance_id
    assert lost.end_reason == spb.END_REASON_CREATE_UNCONFIRMED
    [instance] = (await emulator.state())["instances"]
    # The gateway cannot name it, so it holds the slot: ZEGO sees no second create meanwhile.
    pool = await voice_pool(stub)
    assert (pool.in_use, pool.suspect) == (1, 1)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateSession(voice_request("other", "room_other"), timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    replayed = (await stub.CreateSession(request, timeout=5)).session
    assert replayed.session_id == lost.session_id and replayed.state == spb.SESSION_STATE_FAILED

    # The user hangs up. After MaxIdleTime ZEGO ends the instance and reports it (1202).
    await emulator.set_room_user("room_idle", "caller", present=False)

    async def slot_freed() -> bool:
        return (await voice_pool(stub)).suspect == 0

    await eventually(slot_freed, 10, every=0.05)  # the AgentInstanceDeleted freed the suspect slot
    assert (await emulator.state())["instances"] == []
    cleared = (await stub.GetSession(api.GetSessionRequest(session_id=lost.session_id), timeout=5)).session
    assert not cleared.possible_leak and cleared.state == spb.SESSION_STATE_FAILED
    assert (await voice_pool(stub)).in_use == 0
    # ZEGO confirmed the first attempt's instance gone, so the same request_id is a new attempt.
    retried = (await stub.CreateSession(request, timeout=5)).session
    assert retried.state == spb.SESSION_STATE_STARTING and retried.session_id != lost.session_id
    running = (await emulator.state())["instances"]
    assert [i["AgentInstanceId"] for i in running] == [retried.agent_instance_id]
    assert retried.agent_instance_id != instance["AgentInstanceId"]
