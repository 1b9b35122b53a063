"""Traces with the SDK's in-memory exporter: the caller's traceparent, the RPC span, its ZEGO child
spans, the callbacks' spans linked to the CreateSession, the events' trace ids, and the log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service import tracing
from service.logs import configure_logging
from service.server import Gateway
from service.zego import models as m
from service.zego.client import ZegoClient
from service.zego.exceptions import ZegoConnectError, ZegoInstanceNotFound
from tests.api.sessions_helpers import register_agent, voice_request
from tests.conftest import SERVER_SECRET, Emulator
from tests.events.test_live_callbacks import turn, wait_for, watch_until_ended
from tests.tracing.conftest import Spans

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The gateway's own JSON log lines, as configure_logging makes them, captured."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("INFO")
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


@pytest.fixture
async def wired(emulator: Emulator, gateway: Gateway, channel: grpc.aio.Channel) -> rpc.SessionServiceStub:
    url = f"http://127.0.0.1:{gateway.http_port}/v1/zego/callbacks"
    (await emulator.admin.post("/_emulator/callbacks", json={"url": url})).raise_for_status()
    await register_agent(emulator)
    return rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]


def no_secret_in(spans: list[ReadableSpan]) -> None:
    for span in spans:
        for key, value in (span.attributes or {}).items():
            assert SERVER_SECRET not in str(value), key
            assert "Signature" not in str(value), key


async def test_a_call_is_traced_from_the_caller_through_zego_and_back(
    wired: rpc.SessionServiceStub,
    emulator: Emulator,
    channel: grpc.aio.Channel,
    spans: Spans,
    json_logs: io.StringIO,
) -> None:
    md = (("traceparent", TRACEPARENT),)
    session = (await wired.CreateSession(voice_request(), timeout=5, metadata=md)).session

    async def active() -> bool:
        got = await wired.GetSession(api.GetSessionRequest(session_id=session.session_id), timeout=5)
        return bool(got.session.state == spb.SESSION_STATE_ACTIVE)

    async def measured() -> bool:
        got = await wired.GetSession(api.GetSessionRequest(session_id=session.session_id), timeout=5)
        return bool(got.session.turn_stats.turns == 1)

    await wait_for(active, "AgentInstanceCreated")
    # 2.5 s from the end of speech to speaking: over the 1.5 s budget.
    await turn(emulator, session.agent_instance_id, asr_ms=500, llm_ttft_ms=1400, tts_first_frame_ms=600)
    await wait_for(measured, "the turn")
    await wired.EndSession(api.EndSessionRequest(session_id=session.session_id), timeout=5)
    events = await watch_until_ended(channel, session.session_id)

    # The RPC span continues the caller's trace, with the RPC semantic conventions.
    create = spans.one("agentgw.v1.SessionService/CreateSession")
    assert hex_trace(create) == CALLER_TRACE
    assert create.parent is not None and create.parent.is_remote
    assert format(create.parent.span_id, "016x") == CALLER_SPAN
    assert create.kind is SpanKind.SERVER
    assert dict(create.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "agentgw.v1.SessionService",
        "rpc.method": "CreateSession",
        "rpc.grpc.status_code": 0,
    }
    assert create.context is not None

    # ZEGO's create is its child, with the action, ZEGO's code and RequestId.
    zego = spans.one("ZEGO CreateAgentInstance")
    assert zego.kind is SpanKind.CLIENT
    assert zego.parent is not None and zego.parent.span_id == create.context.span_id
    assert hex_trace(zego) == CALLER_TRACE
    attrs = dict(zego.attributes or {})
    assert attrs["zego.action"] == "CreateAgentInstance" and attrs["zego.code"] == 0
    assert attrs["zego.request_id"] and attrs["server.address"] == "127.0.0.1"

    # Each callback of the session is a new trace, linked to the CreateSession's.
    callbacks = [s for s in spans.all() if s.name.startswith("ZEGO callback ")]
    names = {s.name for s in callbacks}
    assert {"ZEGO callback AgentInstanceCreated", "ZEGO callback ASRResult"} <= names
    for span in callbacks:
        assert span.parent is None and span.kind is SpanKind.SERVER
        assert hex_trace(span) != CALLER_TRACE
        assert (span.attributes or {})["agentgw.session_id"] == session.session_id
        assert [(format(li.context.trace_id, "032x"), li.context.span_id) for li in span.links] == [
            (CALLER_TRACE, create.context.span_id)
        ]
    callback_traces = {hex_trace(s) for s in callbacks}

    # Every delivered event carries the trace it was produced in: a ZEGO event its callback's, the
    # latency breach the callback's that closed the turn (so it leads back to the CreateSession).
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "created" and "latency_budget_exceeded" in kinds and kinds[-1] == "ended"
    for event in events:
        if event.sequence or event.HasField("latency_budget_exceeded"):
            assert event.trace_id in callback_traces, event
        assert len(event.trace_id) == 32
    status = spans.named("ZEGO callback AgentInstanceStatus")
    breach = next(e for e in events if e.HasField("latency_budget_exceeded"))
    assert breach.trace_id in {hex_trace(s) for s in status}

    # The stream was a span too, and nothing carries a secret.
    watch = spans.named("agentgw.v1.EventService/WatchEvents")
    assert watch and (watch[-1].attributes or {})["rpc.grpc.status_code"] == 0
    no_secret_in(spans.all())

    # Log lines written inside a span carry its ids.
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    created_ok = [
        line
        for line in lines
        if line["message"] == "rpc ok" and line.get("method") == "/agentgw.v1.SessionService/CreateSession"
    ]
    assert [(line["trace_id"], line["span_id"]) for line in created_ok] == [
        (CALLER_TRACE, format(create.context.span_id, "016x"))
    ]


async def test_an_rpc_without_traceparent_starts_a_trace_and_reports_its_code(
    channel: grpc.aio.Channel, spans: Spans
) -> None:
    stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetSession(api.GetSessionRequest(session_id="nope"), timeout=5)
    span = spans.one("agentgw.v1.SessionService/GetSession")
    assert span.parent is None
    assert (span.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert span.status.status_code is StatusCode.UNSET  # the caller's mistake, not a server error


async def test_health_checks_are_not_traced(channel: grpc.aio.Channel, spans: Spans) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert spans.all() == []


async def test_an_unmatched_callback_has_a_span_but_no_link(
    gateway: Gateway, emulator: Emulator, spans: Spans
) -> None:
    from tests.events.helpers import post

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        response = await post(client, b"{not json")
    assert response.status_code == 400
    span = spans.one("ZEGO callback unknown")
    assert span.links == () or list(span.links) == []
    assert (span.attributes or {})["agentgw.callback.result"] == "malformed"
    assert span.status.status_code is StatusCode.ERROR


def _client(handler: Any) -> ZegoClient:
    return ZegoClient(
        app_id=1,
        server_secret=SERVER_SECRET,
        base_url="http://zego.test",
        transport=httpx.MockTransport(handler),
    )


async def test_zego_failures_are_error_spans_with_code_and_request_id(spans: Spans) -> None:
    def not_found(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"Code": 410001002, "Message": "gone", "RequestId": "rq-1"})

    async with _client(not_found) as zego:
        with pytest.raises(ZegoInstanceNotFound):
            await zego.delete_agent_instance(m.DeleteAgentInstanceRequest(agent_instance_id="1"))

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with _client(refused) as zego:
        with pytest.raises(ZegoConnectError):
            await zego.delete_agent_instance(m.DeleteAgentInstanceRequest(agent_instance_id="1"))

    first, second = spans.named("ZEGO DeleteAgentInstance")
    assert dict(first.attributes or {}) == {
        "zego.action": "DeleteAgentInstance",
        "rpc.system": "zego",
        "rpc.method": "DeleteAgentInstance",
        "http.request.method": "POST",
        "server.address": "zego.test",
        "zego.code": 410001002,
        "zego.request_id": "rq-1",
        "zego.outcome": "410001002",
    }
    assert first.status.status_code is StatusCode.ERROR
    assert (second.attributes or {})["zego.outcome"] == "connect_error"
    assert "zego.code" not in (second.attributes or {})
    no_secret_in([first, second])


async def test_a_cancelled_zego_call_still_ends_its_span(spans: Spans) -> None:
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    async with _client(hang) as zego:
        call = asyncio.create_task(
            zego.delete_agent_instance(m.DeleteAgentInstanceRequest(agent_instance_id="1"))
        )
        await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    [span] = spans.named("ZEGO DeleteAgentInstance")
    assert (span.attributes or {})["zego.outcome"] == "cancelled"


def test_log_lines_outside_a_span_have_no_trace_ids(json_logs: io.StringIO, spans: Spans) -> None:
    logging.getLogger("agentgw.test").info("outside")
    tracer = tracing.tracer()
    assert tracer is not None
    with tracer.start_as_current_span("inside") as span:
        logging.getLogger("agentgw.test").info("inside")
    outside, inside = (json.loads(line) for line in json_logs.getvalue().splitlines())
    assert "trace_id" not in outside and "span_id" not in outside
    ctx = span.get_span_context()
    assert (inside["trace_id"], inside["span_id"]) == (
        format(ctx.trace_id, "032x"),
        format(ctx.span_id, "016x"),
    )


async def test_callbacks_after_a_restart_still_link_to_the_create(
    emulator: Emulator, tmp_path: Any, spans: Spans, database_url: str | None
) -> None:
    from tests.conftest import gateway_settings

    settings = gateway_settings(emulator, tmp_path / "ledger.db", database_url)

    async def point_callbacks(gw: Gateway) -> None:
        url = f"http://127.0.0.1:{gw.http_port}/v1/zego/callbacks"
        (await emulator.admin.post("/_emulator/callbacks", json={"url": url})).raise_for_status()

    async with Gateway(settings) as first:
        await point_callbacks(first)
        await register_agent(emulator)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.grpc_port}") as channel:
            stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
            md = (("traceparent", TRACEPARENT),)
            session = (await stub.CreateSession(voice_request(), timeout=5, metadata=md)).session
    create = spans.one("agentgw.v1.SessionService/CreateSession")
    assert create.context is not None
    spans.exporter.clear()

    # A new process: only the ledger remembers the CreateSession's trace context.
    async with Gateway(settings) as second:
        await point_callbacks(second)
        await turn(emulator, session.agent_instance_id)

        async def asr_traced() -> bool:
            return bool(spans.named("ZEGO callback ASRResult"))

        await wait_for(asr_traced, "the turn's ASRResult callback")
    [asr] = spans.named("ZEGO callback ASRResult")
    assert [(format(li.context.trace_id, "032x"), li.context.span_id) for li in asr.links] == [
        (CALLER_TRACE, create.context.span_id)
    ]


async def test_a_cancelled_stream_ends_its_span_cleanly(
    gateway: Gateway, channel: grpc.aio.Channel, spans: Spans, caplog: pytest.LogCaptureFixture
) -> None:
    from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
    from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc

    stub = erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
    call = stub.WatchEvents(eapi.WatchEventsRequest(start=eapi.START_POSITION_NOW))

    async def subscribed() -> bool:
        return gateway.core.bus.subscriber_count == 1

    await wait_for(subscribed, "the subscription")
    call.cancel()

    async def ended() -> bool:
        return bool(spans.named("agentgw.v1.EventService/WatchEvents"))

    await wait_for(ended, "the stream's span")
    [span] = spans.named("agentgw.v1.EventService/WatchEvents")
    assert (span.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert span.status.status_code is StatusCode.UNSET
    assert not [r for r in caplog.records if "detach" in r.getMessage()]


async def test_reflection_streams_are_traced_too(channel: grpc.aio.Channel, spans: Spans) -> None:
    from grpc_reflection.v1alpha import reflection_pb2

    v1 = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    async def ask() -> Any:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    answers = [answer async for answer in v1(ask(), timeout=5)]
    assert answers and answers[0].list_services_response.service
    [span] = spans.named("grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
    assert (span.attributes or {})["rpc.grpc.status_code"] == 0
