"""How WatchEvents streams end: unknown sessions, several watched sessions, a client that drops its
stream, and the gateway shutting down under open streams."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.server import Gateway
from tests.api.sessions_helpers import register_agent, voice_request
from tests.conftest import Emulator, eventually, gateway_settings, rich_error
from tests.events.helpers import callback, post

TIMEOUT = 5.0


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"heartbeat_seconds": 0.05}


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> erpc.EventServiceStub:
    return erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]


async def _drain(call: Any) -> list[eapi.WatchEventsResponse]:
    got: list[eapi.WatchEventsResponse] = []
    async with asyncio.timeout(TIMEOUT):
        async for message in call:
            got.append(message)
    return got


async def test_a_watch_on_sessions_that_do_not_exist_is_not_found(
    stub: erpc.EventServiceStub, channel: grpc.aio.Channel, emulator: Emulator
) -> None:
    await register_agent(emulator)
    sessions = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    real = (await sessions.CreateSession(voice_request(), timeout=TIMEOUT)).session.session_id
    for ids in (["no-such-session"], [real, "no-such-session"]):
        call = stub.WatchEvents(
            eapi.WatchEventsRequest(filter=eapi.EventFilter(session_ids=ids)), timeout=TIMEOUT
        )
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await _drain(call)
        err = rich_error(failure.value)
        assert err.code == grpc.StatusCode.NOT_FOUND and err.reason == "SESSION_NOT_FOUND"
        assert err.get(error_details_pb2.ResourceInfo).resource_name == "no-such-session"


async def test_a_watch_on_several_sessions_completes_once_all_have_ended(
    stub: erpc.EventServiceStub, channel: grpc.aio.Channel, emulator: Emulator, gateway: Gateway
) -> None:
    await register_agent(emulator)
    sessions = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    ids = [
        (
            await sessions.CreateSession(voice_request(user=f"u{i}", room=f"r{i}"), timeout=TIMEOUT)
        ).session.session_id
        for i in range(3)
    ]
    only_ends = eapi.EventFilter(session_ids=ids, event_types=[epb.EVENT_TYPE_ENDED])
    for batch in (0, 10):  # one event per message, and EventBatch messages
        call = stub.WatchEvents(
            eapi.WatchEventsRequest(filter=only_ends, max_batch_size=batch), timeout=TIMEOUT
        )
        if batch == 0:
            await eventually(lambda: gateway.core.bus.subscriber_count == 1)
            for sid in ids[:2]:
                await sessions.EndSession(api.EndSessionRequest(session_id=sid), timeout=TIMEOUT)
            got: list[str] = []
            async with asyncio.timeout(TIMEOUT):
                async for message in call:
                    if message.HasField("event"):
                        got.append(message.event.session_id)
                    if len(got) == 2:
                        break
            assert got == ids[:2]
            # Two of three ended: the stream is still open (heartbeats keep coming).
            await sessions.EndSession(api.EndSessionRequest(session_id=ids[2]), timeout=TIMEOUT)
            rest = [m.event.session_id for m in await _drain(call) if m.HasField("event")]
            assert rest == [ids[2]]
        else:
            # All three ended before this watch started after cursor 0: replayed, then it completes.
            call = stub.WatchEvents(
                eapi.WatchEventsRequest(
                    filter=only_ends, max_batch_size=batch, start=eapi.START_POSITION_OLDEST
                ),
                timeout=TIMEOUT,
            )
            replayed = [
                e.session_id for m in await _drain(call) if m.HasField("batch") for e in m.batch.events
            ]
            assert sorted(replayed) == sorted(ids)
        assert await call.code() == grpc.StatusCode.OK
    # A watch that starts after all of them ended completes at once, with nothing to send.
    late = stub.WatchEvents(
        eapi.WatchEventsRequest(filter=eapi.EventFilter(session_ids=ids)), timeout=TIMEOUT
    )
    assert not [m for m in await _drain(late) if m.HasField("event")]
    assert await late.code() == grpc.StatusCode.OK


async def test_a_client_dropping_its_watch_logs_nothing_above_debug(
    stub: erpc.EventServiceStub, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for i in range(4):
        call = stub.WatchEvents(eapi.WatchEventsRequest(), timeout=TIMEOUT)
        if i % 2 == 0:  # dropped after a heartbeat arrived (the handler is parked at its yield) ...
            async for _ in call:
                break
        else:  # ... or while it waits for the next event
            await asyncio.sleep(0.02)
        call.cancel()
    await eventually(lambda: gateway.core.bus.subscriber_count == 0)  # every handler has ended
    gc.collect()  # asyncio's finalizer closes abandoned generators, in a context of its own
    await asyncio.sleep(0.1)
    loud = [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert not loud, [(r.name, r.getMessage()) for r in loud]


# --- shutdown -------------------------------------------------------------------------------------


@pytest.fixture
async def long_grace(emulator: Emulator, tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway whose grace period (20 s) is far longer than any stream may take to end."""
    gw = Gateway(gateway_settings(emulator, tmp_path / "ledger.db", shutdown_grace_seconds=20.0))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def test_shutdown_ends_open_streams_at_once_with_unavailable_retry_info_and_cursor(
    long_grace: Gateway,
) -> None:
    gw = long_grace
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}", timeout=TIMEOUT) as http:
        for i in range(3):
            assert (
                await post(http, callback("LLMResult", "1912124734317838336", {"Round": i, "Text": "t"}))
            ).is_success
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
        stub = erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
        replaying = stub.WatchEvents(eapi.WatchEventsRequest(start=eapi.START_POSITION_OLDEST))
        idle = stub.WatchEvents(eapi.WatchEventsRequest())
        seen = [m.event.cursor async for m in _first(replaying, 3)]
        # Both handlers are subscribed (the idle one has sent nothing yet).
        await eventually(lambda: gw.core.bus.subscriber_count == 2)
        started = time.monotonic()
        stopping = asyncio.create_task(gw.stop())
        errors = []
        for call in (replaying, idle):
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await _drain(call)
            errors.append(rich_error(failure.value))
        ended_after = time.monotonic() - started
        await stopping
    assert ended_after < 2.0  # not the 20 s grace period
    for err in errors:
        assert err.code == grpc.StatusCode.UNAVAILABLE and err.reason == "SHUTTING_DOWN"
        assert err.get(error_details_pb2.RetryInfo).retry_delay.ToNanoseconds() > 0
    info = errors[0].get(error_details_pb2.ErrorInfo)
    assert info.metadata["resume_after_cursor"] == str(seen[-1])
    assert f"after cursor {seen[-1]}" in errors[0].message


def _started(gw: Gateway, service: str, method: str) -> float:
    labels = {"grpc_type": "unary", "grpc_service": f"agentgw.v1.{service}", "grpc_method": method}
    return gw.metrics.registry.get_sample_value("grpc_server_started_total", labels) or 0.0


async def _first(call: Any, n: int) -> AsyncIterator[eapi.WatchEventsResponse]:
    got = 0
    async with asyncio.timeout(TIMEOUT):
        async for message in call:
            if message.HasField("event"):
                yield message
                got += 1
                if got == n:
                    return


async def test_callbacks_are_accepted_while_grpc_drains(long_grace: Gateway, emulator: Emulator) -> None:
    """A unary call still in flight holds the gRPC side open; ZEGO's callbacks meanwhile are stored."""
    gw = long_grace
    await emulator.fault(action="QueryAgents", count=1, latency_ms=1500)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
        from agentgw_client.gen.agentgw.v1 import agent_service_pb2, agent_service_pb2_grpc

        agents = agent_service_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
        slow = agents.GetAgent(agent_service_pb2.GetAgentRequest(agent_id="a1"), timeout=TIMEOUT)
        await eventually(lambda: _started(gw, "AgentService", "GetAgent") == 1)  # the call is in flight
        stopping = asyncio.create_task(gw.stop())
        await asyncio.sleep(0.2)  # gRPC is draining the slow call
        assert not stopping.done()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}", timeout=TIMEOUT) as http:
            response = await post(
                http, callback("LLMResult", "1912124734317838336", {"Round": 1, "Text": "late"})
            )
        assert response.status_code == 200, response.text
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await slow
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND  # it finished: the agent does not exist
        await stopping
