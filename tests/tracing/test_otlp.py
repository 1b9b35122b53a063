"""The gateway exporting over OTLP/gRPC, configured only by OTEL_* variables, to a real receiver on
loopback built from the opentelemetry-proto stubs: the spans that arrive prove propagation and links."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service import tracing
from service.server import Gateway
from tests.api.sessions_helpers import register_agent, voice_request
from tests.conftest import Emulator, eventually, gateway_settings
from tests.events.test_live_callbacks import watch_until_ended

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver that keeps every export request."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[dict[str, str], trace_pb2.Span]]:
        """(resource attributes, span) of everything received."""
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    servicer = Receiver()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(None)


async def test_spans_reach_an_otlp_receiver_with_propagation_and_links(
    receiver: tuple[Receiver, int], emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector, port = receiver
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    assert not tracing.enabled()

    async with Gateway(gateway_settings(emulator, tmp_path / "ledger.db")) as gateway:
        assert tracing.enabled()
        url = f"http://127.0.0.1:{gateway.http_port}/v1/zego/callbacks"
        await emulator.set_callback_url(url)
        await register_agent(emulator)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
            stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
            md = (("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),)
            session = (await stub.CreateSession(voice_request(), timeout=5, metadata=md)).session

            async def active() -> bool:
                got = await stub.GetSession(api.GetSessionRequest(session_id=session.session_id), timeout=5)
                return bool(got.session.state == spb.SESSION_STATE_ACTIVE)

            await eventually(active, 10, every=0.02)  # AgentInstanceCreated
            await stub.EndSession(api.EndSessionRequest(session_id=session.session_id), timeout=5)
            events = await watch_until_ended(channel, session.session_id)
    # Stopping the gateway flushed its spans and turned tracing off again.
    assert not tracing.enabled()

    received = collector.spans()
    assert {resource["service.name"] for resource, _ in received} == {"agentgw"}
    by_name: dict[str, list[trace_pb2.Span]] = {}
    for _, span in received:
        by_name.setdefault(span.name, []).append(span)

    [create] = by_name["agentgw.v1.SessionService/CreateSession"]
    assert create.trace_id.hex() == CALLER_TRACE and create.parent_span_id.hex() == CALLER_SPAN
    assert create.kind == trace_pb2.Span.SPAN_KIND_SERVER
    [zego] = by_name["ZEGO CreateAgentInstance"]
    assert zego.trace_id == create.trace_id and zego.parent_span_id == create.span_id
    assert zego.kind == trace_pb2.Span.SPAN_KIND_CLIENT

    [created_callback] = by_name["ZEGO callback AgentInstanceCreated"]
    assert created_callback.trace_id != create.trace_id and not created_callback.parent_span_id
    assert [(link.trace_id, link.span_id) for link in created_callback.links] == [
        (create.trace_id, create.span_id)
    ]
    # The subscriber's event names the callback's trace, which links back to the caller's.
    assert events[0].HasField("created")
    assert events[0].trace_id == created_callback.trace_id.hex()


async def test_an_unreachable_collector_does_not_hold_up_the_gateway(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    # A port nothing listens on (we bind and close it), and a short export timeout.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")
    async with Gateway(gateway_settings(emulator, tmp_path / "ledger.db")) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
            stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.GetSession(api.GetSessionRequest(session_id="nope"), timeout=2)
                assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert not tracing.enabled()
