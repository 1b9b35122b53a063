"""Telemetry hygiene: no ``*_created`` series, reflection as v1 and v1alpha, RFC 3339 log times,
httpx's request lines only at DEBUG, and one agent-state vocabulary for events and GetAgentStatus."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from service.logs import configure_logging
from service.server import Gateway
from service.zego import models as m
from service.zego.client import ZegoClient
from tests.conftest import SERVER_SECRET

V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


async def test_metrics_have_no_created_series(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        body = (await client.get("/metrics")).text
    series = [line.split("{")[0].split(" ")[0] for line in body.splitlines() if not line.startswith("#")]
    assert "agentgw_sessions_created_total" in series  # counters are there ...
    assert "grpc_server_handled_total" in series
    assert [s for s in series if s.endswith("_created")] == []  # ... without their creation times


def _reflect_v1(
    channel: grpc.aio.Channel,
) -> Callable[..., AsyncIterator[reflection_pb2.ServerReflectionResponse]]:
    # v1 and v1alpha messages are the same bytes: v1alpha's classes encode and decode v1 calls.
    return channel.stream_stream(  # type: ignore[return-value]
        V1_METHOD,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )


async def _ask(
    call: Callable[..., AsyncIterator[reflection_pb2.ServerReflectionResponse]], **request: str
) -> reflection_pb2.ServerReflectionResponse:
    async def one() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(**request)

    [answer] = [r async for r in call(one(), timeout=5)]
    return answer


async def test_reflection_is_served_as_v1_and_v1alpha(gateway: Gateway, channel: grpc.aio.Channel) -> None:
    v1 = _reflect_v1(channel)
    alpha = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo
    expected = {
        "agentgw.v1.SessionService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    for call in (v1, alpha):
        names = {s.name for s in (await _ask(call, list_services="")).list_services_response.service}
        assert expected <= names

    # v1 describes our services and itself, from a real descriptor of package grpc.reflection.v1.
    for symbol, package in (
        ("agentgw.v1.SessionService", "agentgw.v1"),
        ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1"),
    ):
        answer = await _ask(v1, file_containing_symbol=symbol)
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in answer.file_descriptor_response.file_descriptor_proto
        ]
        assert package in {f.package for f in files}, symbol
    [v1_file] = [f for f in files if f.package == "grpc.reflection.v1"]
    method = v1_file.service[0].method[0]
    assert (method.input_type, method.output_type) == (
        ".grpc.reflection.v1.ServerReflectionRequest",
        ".grpc.reflection.v1.ServerReflectionResponse",
    )
    sent = gateway.metrics.registry.get_sample_value(
        "grpc_server_msg_sent_total",
        {
            "grpc_type": "bidi_stream",
            "grpc_service": "grpc.reflection.v1.ServerReflection",
            "grpc_method": "ServerReflectionInfo",
        },
    )
    assert sent == 3


@pytest.fixture
def logs() -> Iterator[Callable[[str], io.StringIO]]:
    """configure_logging at a level, writing to a buffer; the root logger restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def configure(level: str) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(level)
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        return stream

    try:
        yield configure
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_log_times_are_rfc3339_with_zone(logs: Callable[[str], io.StringIO]) -> None:
    stream = logs("INFO")
    logging.getLogger("agentgw.test").info("hello")
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line["time"]
    assert line["level"] == "INFO" and line["message"] == "hello"


async def _one_zego_call() -> None:
    def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"Code": 0, "Message": "Succeed", "RequestId": "r", "Data": {}})

    async with ZegoClient(
        app_id=1, server_secret=SERVER_SECRET, base_url="http://zego.test", transport=httpx.MockTransport(ok)
    ) as zego:
        await zego.delete_agent_instance(m.DeleteAgentInstanceRequest(agent_instance_id="1"))


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_httpx_request_lines_only_at_debug(logs: Callable[[str], io.StringIO], level: str) -> None:
    stream = logs(level)
    await _one_zego_call()
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    httpx_lines = [line for line in lines if line["logger"] == "httpx"]
    if level == "INFO":
        assert httpx_lines == []
    else:
        [line] = httpx_lines
        assert line["level"] == "DEBUG" and "HTTP Request: POST" in line["message"]
        assert "Signature=" not in line["message"] and SERVER_SECRET not in line["message"]
    # Warnings from httpx are not touched.
    logging.getLogger("httpx").warning("kept")
    assert "kept" in stream.getvalue()


def test_events_and_get_agent_status_share_one_agent_state_vocabulary() -> None:
    field = api.GetAgentStatusResponse.DESCRIPTOR.fields_by_name["status"]
    assert field.enum_type is epb.AgentStatusChanged.DESCRIPTOR.fields_by_name["status"].enum_type
    assert field.enum_type.full_name == "agentgw.v1.AgentState"
    assert "AgentStatus" not in api.DESCRIPTOR.enum_types_by_name
    # Wire compatible: what the old AGENT_STATUS_SPEAKING (4) encoded reads as AGENT_STATE_SPEAKING.
    assert api.GetAgentStatusResponse.FromString(b"\x08\x04").status == epb.AGENT_STATE_SPEAKING
