"""The handler wrapper of our own services (``/agentgw.v1.*``): request ids, the log line, error
mapping, and metrics on every outcome; then the same wrapper inside the real gateway."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agentgw_client.gen.agentgw.v1 import agent_pb2, agent_service_pb2
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service import errors
from service.api.request_ids import REQUEST_ID_HEADER, new_request_id
from service.api.rpc_handlers import RpcHandlers
from service.logs import current_request_id
from service.metrics import Metrics
from service.server import Gateway
from tests.conftest import eventually, rich_error, serve_handlers

Context = grpc.aio.ServicerContext[Any, Any]
OURS = "agentgw.v1.Probe"
TIMEOUT = 5.0


def _identity(data: bytes) -> bytes:
    return data


async def whoami(request: bytes, context: Context) -> bytes:
    """Answers the request id the handler runs under."""
    return (current_request_id() or "").encode()


async def missing(request: bytes, context: Context) -> bytes:
    raise errors.NotFound("session", "s1", "SESSION_NOT_FOUND")


async def bug(request: bytes, context: Context) -> bytes:
    raise RuntimeError("handler bug")


async def stream_then_missing(request: bytes, context: Context) -> AsyncIterator[bytes]:
    yield (current_request_id() or "").encode()
    raise errors.NotFound("session", "s1", "SESSION_NOT_FOUND")


async def stream_forever(request: bytes, context: Context) -> AsyncIterator[bytes]:
    while True:
        yield (current_request_id() or "").encode()
        await asyncio.sleep(0)


def _strict(data: bytes) -> bytes:
    """A request deserializer that refuses what it cannot parse, as protobuf's does."""
    if data.startswith(b"\xff"):
        raise DecodeError("Error parsing message")
    return data


class Probe:
    def __init__(self, channel: grpc.aio.Channel, metrics: Metrics) -> None:
        self.channel = channel
        self.metrics = metrics

    def unary(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        return self.channel.unary_unary(f"/{OURS}/{method}", _identity, _identity)

    def value(self, name: str, rpc_type: str, method: str, **labels: str) -> float:
        got = self.metrics.registry.get_sample_value(
            name, {"grpc_type": rpc_type, "grpc_service": OURS, "grpc_method": method, **labels}
        )
        return 0.0 if got is None else got


@pytest.fixture
async def probe() -> AsyncIterator[Probe]:
    codec = {"request_deserializer": _identity, "response_serializer": _identity}
    metrics = Metrics()
    handlers = RpcHandlers(metrics)
    handlers.add_registered_method_handlers(
        OURS,
        {
            "WhoAmI": grpc.unary_unary_rpc_method_handler(whoami, **codec),
            "Missing": grpc.unary_unary_rpc_method_handler(missing, **codec),
            "Bug": grpc.unary_unary_rpc_method_handler(bug, **codec),
            "StreamThenMissing": grpc.unary_stream_rpc_method_handler(stream_then_missing, **codec),
            "StreamForever": grpc.unary_stream_rpc_method_handler(stream_forever, **codec),
            "Strict": grpc.unary_unary_rpc_method_handler(
                whoami, request_deserializer=_strict, response_serializer=_identity
            ),
            "StrictStream": grpc.unary_stream_rpc_method_handler(
                stream_then_missing, request_deserializer=_strict, response_serializer=_identity
            ),
        },
    )
    async with serve_handlers(handlers) as channel:
        yield Probe(channel, metrics)


async def _answer_and_trailer(probe: Probe, metadata: tuple[tuple[str, str], ...] = ()) -> tuple[str, str]:
    call = probe.unary("WhoAmI")(b"", timeout=TIMEOUT, metadata=metadata)
    body = (await call).decode()
    trailer = dict(tuple(await call.trailing_metadata()))[REQUEST_ID_HEADER]
    return body, trailer


def test_new_request_ids_are_unique_and_fit_a_header() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(0 < len(rid) <= 64 and rid.isprintable() and rid.isascii() for rid in ids)


async def test_each_call_gets_its_own_request_id_in_context_and_trailer(probe: Probe) -> None:
    first = await _answer_and_trailer(probe)
    second = await _answer_and_trailer(probe)
    assert first[0] == first[1] and second[0] == second[1]  # the handler ran under the id it sent back
    assert first[0] != second[0]
    assert len(first[0]) == 32


async def test_a_valid_caller_request_id_is_used_and_echoed(probe: Probe) -> None:
    assert await _answer_and_trailer(probe, ((REQUEST_ID_HEADER, "trace-7"),)) == ("trace-7", "trace-7")


async def test_an_oversized_caller_request_id_is_replaced(probe: Probe) -> None:
    body, trailer = await _answer_and_trailer(probe, ((REQUEST_ID_HEADER, "x" * 65),))
    assert body == trailer and body != "x" * 65 and len(body) == 32


async def test_the_ok_log_line_is_written_only_when_info_is_enabled(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentgw.rpc")
    await probe.unary("WhoAmI")(b"", timeout=TIMEOUT)
    assert not [r for r in caplog.records if r.getMessage() == "rpc ok"]
    caplog.set_level(logging.INFO, logger="agentgw.rpc")
    await probe.unary("WhoAmI")(b"", timeout=TIMEOUT, metadata=((REQUEST_ID_HEADER, "trace-8"),))
    [line] = [r for r in caplog.records if r.getMessage() == "rpc ok"]
    assert line.__dict__["method"] == f"/{OURS}/WhoAmI"
    assert line.__dict__["ms"] >= 0


async def test_a_domain_error_is_mapped_and_counted(probe: Probe) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await probe.unary("Missing")(b"", timeout=TIMEOUT, metadata=((REQUEST_ID_HEADER, "trace-9"),))
    err = rich_error(failure.value)
    assert err.code == grpc.StatusCode.NOT_FOUND and err.reason == "SESSION_NOT_FOUND"
    assert err.get(error_details_pb2.RequestInfo).request_id == "trace-9"
    await eventually(
        lambda: probe.value("grpc_server_handled_total", "unary", "Missing", grpc_code="NotFound") == 1
    )
    assert probe.value("grpc_server_started_total", "unary", "Missing") == 1
    assert probe.value("grpc_server_msg_received_total", "unary", "Missing") == 1
    assert probe.value("grpc_server_msg_sent_total", "unary", "Missing") == 0
    assert probe.value("grpc_server_handling_seconds_count", "unary", "Missing") == 1


async def test_a_bug_is_internal_with_a_generic_message_and_counted(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await probe.unary("Bug")(b"", timeout=TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.INTERNAL
    assert "handler bug" not in (failure.value.details() or "")
    assert rich_error(failure.value).get(error_details_pb2.RequestInfo).request_id
    await eventually(
        lambda: probe.value("grpc_server_handled_total", "unary", "Bug", grpc_code="Internal") == 1
    )
    assert probe.value("grpc_server_handled_total", "unary", "Bug", grpc_code="Unknown") == 0
    assert any(r.getMessage() == "rpc failed" for r in caplog.records)


async def test_a_stream_error_is_mapped_after_what_was_sent(probe: Probe) -> None:
    call = probe.channel.unary_stream(f"/{OURS}/StreamThenMissing", _identity, _identity)(
        b"", timeout=TIMEOUT, metadata=((REQUEST_ID_HEADER, "trace-10"),)
    )
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        async for message in call:
            received.append(message)
    assert received == [b"trace-10"]  # the stream handler ran under the caller's id
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert rich_error(failure.value).get(error_details_pb2.RequestInfo).request_id == "trace-10"
    labels = ("server_stream", "StreamThenMissing")
    await eventually(lambda: probe.value("grpc_server_handled_total", *labels, grpc_code="NotFound") == 1)
    assert probe.value("grpc_server_msg_sent_total", *labels) == 1


async def test_the_request_id_trailer_is_sent_on_errors_too(probe: Probe) -> None:
    call = probe.unary("Missing")(b"", timeout=TIMEOUT, metadata=((REQUEST_ID_HEADER, "trace-11"),))
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    trailers = dict(tuple(failure.value.trailing_metadata() or ()))
    assert trailers[REQUEST_ID_HEADER] == "trace-11"
    assert rich_error(failure.value).reason == "SESSION_NOT_FOUND"  # the status still travels with it


async def test_the_request_id_trailer_ends_streams_whether_they_fail_or_not(probe: Probe) -> None:
    failing = probe.channel.unary_stream(f"/{OURS}/StreamThenMissing", _identity, _identity)(
        b"", timeout=TIMEOUT, metadata=((REQUEST_ID_HEADER, "trace-12"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        async for _ in failing:
            pass
    assert dict(tuple(failure.value.trailing_metadata() or ()))[REQUEST_ID_HEADER] == "trace-12"
    assert rich_error(failure.value).code == grpc.StatusCode.NOT_FOUND


async def test_undecodable_request_bytes_are_invalid_argument_not_unknown(probe: Probe) -> None:
    for method, kind in (("Strict", "unary"), ("StrictStream", "server_stream")):
        path = f"/{OURS}/{method}"
        multi: Any = (
            probe.channel.unary_unary(path, _identity, _identity)
            if kind == "unary"
            else probe.channel.unary_stream(path, _identity, _identity)
        )
        call = multi(b"\xff\x01", timeout=TIMEOUT, metadata=((REQUEST_ID_HEADER, "trace-13"),))
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            if kind == "unary":
                await call
            else:
                async for _ in call:
                    pass
        err = rich_error(failure.value)
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT, method
        assert (
            "Error parsing message" in err.get(error_details_pb2.BadRequest).field_violations[0].description
        )
        assert dict(tuple(failure.value.trailing_metadata() or ()))[REQUEST_ID_HEADER] == "trace-13"
        await eventually(
            lambda k=kind, m=method: (
                probe.value("grpc_server_handled_total", k, m, grpc_code="InvalidArgument") == 1
            )
        )


async def test_a_dropped_stream_logs_nothing_above_debug(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for i in range(5):  # cancelled while the handler sleeps and while it is at a yield
        call = probe.channel.unary_stream(f"/{OURS}/StreamForever", _identity, _identity)(
            b"", timeout=TIMEOUT, metadata=((REQUEST_ID_HEADER, f"drop-{i}"),)
        )
        async for _ in call:
            break
        call.cancel()
    labels = ("server_stream", "StreamForever")
    await eventually(lambda: probe.value("grpc_server_handled_total", *labels, grpc_code="Canceled") == 5)
    gc.collect()  # asyncio's finalizer closes abandoned generators, in a context of its own
    await asyncio.sleep(0.05)
    loud = [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert not loud, [(r.name, r.getMessage(), r.exc_info) for r in loud]


# --- inside the gateway ---------------------------------------------------------------------------


def _gateway_value(gateway: Gateway, service: str, method: str, code: str) -> float:
    got = gateway.metrics.registry.get_sample_value(
        "grpc_server_handled_total",
        {"grpc_type": "unary", "grpc_service": service, "grpc_method": method, "grpc_code": code},
    )
    return 0.0 if got is None else got


async def test_the_gateway_wraps_every_service_once(gateway: Gateway, channel: grpc.aio.Channel) -> None:
    sessions = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    call = sessions.GetSession(api.GetSessionRequest(session_id="nope"), timeout=TIMEOUT)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert rich_error(failure.value).get(error_details_pb2.RequestInfo).request_id
    await eventually(
        lambda: _gateway_value(gateway, "agentgw.v1.SessionService", "GetSession", "NotFound") == 1
    )

    check = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    assert _gateway_value(gateway, "grpc.health.v1.Health", "Check", "OK") == 1

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    [answer] = [r async for r in reflect.ServerReflectionInfo(ask(), timeout=TIMEOUT)]
    names = {s.name for s in answer.list_services_response.service}
    assert {"agentgw.v1.SessionService", "grpc.health.v1.Health"} <= names
    got = gateway.metrics.registry.get_sample_value(
        "grpc_server_msg_sent_total",
        {
            "grpc_type": "bidi_stream",
            "grpc_service": "grpc.reflection.v1alpha.ServerReflection",
            "grpc_method": "ServerReflectionInfo",
        },
    )
    assert got == 1


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited field, encoded by hand (protobuf itself refuses to build what follows)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _nested_struct(depth: int) -> bytes:
    """A Struct {"a": {"a": ... }} ``depth`` levels deep: Struct.fields = 1, entry value = 2,
    Value.struct_value = 5."""
    struct = b""
    for _ in range(depth):
        struct = _field(1, _field(1, b"a") + _field(2, _field(5, struct)))
    return struct


def _deep_create_agent_request(depth: int) -> bytes:
    llm = agent_pb2.LlmConfig(url="https://llm.example/v1", api_key="k", model="m").SerializeToString()
    llm += _field(agent_pb2.LlmConfig.DESCRIPTOR.fields_by_name["params"].number, _nested_struct(depth))
    agent = agent_pb2.Agent(agent_id="deep").SerializeToString()
    agent += _field(agent_pb2.Agent.DESCRIPTOR.fields_by_name["llm"].number, llm)
    number = agent_service_pb2.CreateAgentRequest.DESCRIPTOR.fields_by_name["agent"].number
    return _field(number, agent)


async def test_undecodable_requests_to_the_gateway_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    raw = channel.unary_unary("/agentgw.v1.SessionService/GetSession", _identity, _identity)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=TIMEOUT)  # a length running past the end
    assert rich_error(failure.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(tuple(failure.value.trailing_metadata() or ()))[REQUEST_ID_HEADER]

    # A Struct nested beyond protobuf's recursion limit (100) in the LLM params of a new agent.
    agent_service_pb2.CreateAgentRequest.FromString(_deep_create_agent_request(20))  # the encoding is right
    create = channel.unary_unary("/agentgw.v1.AgentService/CreateAgent", _identity, _identity)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await create(_deep_create_agent_request(150), timeout=TIMEOUT)
    assert rich_error(failure.value).code == grpc.StatusCode.INVALID_ARGUMENT

    watch = channel.unary_stream("/agentgw.v1.EventService/WatchEvents", _identity, _identity)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        async for _ in watch(b"\x0a\xff\xff\xff\xff\x0f", timeout=TIMEOUT):
            pass
    assert rich_error(failure.value).code == grpc.StatusCode.INVALID_ARGUMENT


async def test_undecodable_health_checks_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    raw = channel.unary_unary("/grpc.health.v1.Health/Check", _identity, _identity)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
