"""The handler wrapper of our own services (``/agentgw.v1.*``): request ids, the log line, error
mapping, and metrics on every outcome; then the same wrapper inside the real gateway."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service import errors
from service.api.interceptors import REQUEST_ID_HEADER, RpcHandlers, new_request_id
from service.gen.agentgw.v1 import session_service_pb2 as api
from service.gen.agentgw.v1 import session_service_pb2_grpc as rpc
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
