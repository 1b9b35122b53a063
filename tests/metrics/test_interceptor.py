"""The handler wrapper's metrics against a real in-process grpc.aio server on loopback (conventions §5.2).

The health service gives a write-style stream (``Watch`` awaits ``context.write``); a generic handler
gives unary, yield-style and request-streaming methods. Values are read back from the registry the way
Prometheus would see them, with go-grpc-prometheus's label values.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from service import errors
from service.api.metrics_interceptor import preinitialize
from service.api.rpc_handlers import RpcHandlers
from service.metrics import Metrics
from tests.conftest import eventually, serve_handlers

Context = grpc.aio.ServicerContext[Any, Any]
PROBE = "test.v1.Probe"
MAPPED = "agentgw.v1.Probe"  # one of our services, so exceptions get mapped
TIMEOUT = 5.0


def _identity(data: bytes) -> bytes:
    return data


async def ok(request: bytes, context: Context) -> bytes:
    return b"pong:" + request


async def invalid(request: bytes, context: Context) -> bytes:
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad field")
    await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]
    raise AssertionError("unreachable")


async def boom(request: bytes, context: Context) -> bytes:
    raise RuntimeError("handler bug")


async def slow(request: bytes, context: Context) -> bytes:
    await asyncio.sleep(TIMEOUT)
    return b""


async def not_found(request: bytes, context: Context) -> bytes:
    raise errors.NotFound("session", "sessions/x", "SESSION_NOT_FOUND")


async def count(request: bytes, context: Context) -> AsyncIterator[bytes]:
    for i in range(int(request)):
        yield str(i).encode()


async def count_then_abort(request: bytes, context: Context) -> AsyncIterator[bytes]:
    yield b"0"
    yield b"1"
    await context.abort(grpc.StatusCode.OUT_OF_RANGE, "cursor expired")


async def forever(request: bytes, context: Context) -> AsyncIterator[bytes]:
    yield b"first"
    await asyncio.sleep(TIMEOUT)
    yield b"never"


async def total(requests: AsyncIterator[bytes], context: Context) -> bytes:
    return str(sum([len(r) async for r in requests])).encode()


async def echo(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
    async for r in requests:
        yield r


async def echo_by_read(requests: AsyncIterator[bytes], context: Context) -> None:
    """Read-and-write style bidi: ``context.read()`` / ``context.write()``, no yield."""
    while (message := await context.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
        await context.write(message)


def _handlers() -> list[grpc.GenericRpcHandler[Any, Any]]:
    codec = {"request_deserializer": _identity, "response_serializer": _identity}
    unary = {"Ok": ok, "Invalid": invalid, "Boom": boom, "Slow": slow, "NotFound": not_found}
    methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        **{name: grpc.unary_unary_rpc_method_handler(f, **codec) for name, f in unary.items()},
        "Count": grpc.unary_stream_rpc_method_handler(count, **codec),
        "CountThenAbort": grpc.unary_stream_rpc_method_handler(count_then_abort, **codec),
        "Forever": grpc.unary_stream_rpc_method_handler(forever, **codec),
        "Total": grpc.stream_unary_rpc_method_handler(total, **codec),
        "Echo": grpc.stream_stream_rpc_method_handler(echo, **codec),
        "EchoByRead": grpc.stream_stream_rpc_method_handler(echo_by_read, **codec),
    }
    return [
        grpc.method_handlers_generic_handler(PROBE, methods),
        grpc.method_handlers_generic_handler(MAPPED, {"NotFound": methods["NotFound"]}),
    ]


@dataclass
class Env:
    channel: grpc.aio.Channel
    metrics: Metrics
    health: Any

    def unary(self, method: str, service: str = PROBE) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        return self.channel.unary_unary(f"/{service}/{method}", _identity, _identity)

    def value(self, name: str, rpc_type: str, method: str, service: str = PROBE, **labels: str) -> float:
        got = self.metrics.registry.get_sample_value(
            name, {"grpc_type": rpc_type, "grpc_service": service, "grpc_method": method, **labels}
        )
        return 0.0 if got is None else got

    def handled(self, rpc_type: str, method: str, code: str, service: str = PROBE) -> float:
        return self.value("grpc_server_handled_total", rpc_type, method, service, grpc_code=code)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    metrics = Metrics()
    preinitialize(metrics, [])
    handlers = RpcHandlers(metrics)
    handlers.add_generic_rpc_handlers(_handlers())
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    handlers.register(health_pb2_grpc.add_HealthServicer_to_server, servicer)
    async with serve_handlers(handlers) as channel:
        yield Env(channel, metrics, servicer)


async def test_unary_ok(env: Env) -> None:
    assert await env.unary("Ok")(b"ping", timeout=TIMEOUT) == b"pong:ping"
    assert env.value("grpc_server_started_total", "unary", "Ok") == 1
    assert env.value("grpc_server_msg_received_total", "unary", "Ok") == 1
    assert env.value("grpc_server_msg_sent_total", "unary", "Ok") == 1
    assert env.handled("unary", "Ok", "OK") == 1
    assert env.value("grpc_server_handling_seconds_count", "unary", "Ok") == 1
    assert env.value("grpc_server_handling_seconds_bucket", "unary", "Ok", le="+Inf") == 1


async def test_unary_abort_with_status_records_its_code(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await env.unary("Invalid")(b"", timeout=TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.value.details() == "bad field"  # AbortError passed through untouched
    await eventually(lambda: env.handled("unary", "Invalid", "InvalidArgument") == 1)
    assert env.handled("unary", "Invalid", "Unknown") == 0
    assert env.value("grpc_server_msg_sent_total", "unary", "Invalid") == 0
    assert env.value("grpc_server_handling_seconds_count", "unary", "Invalid") == 1


async def test_unary_exception_is_unknown(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await env.unary("Boom")(b"", timeout=TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.UNKNOWN
    assert env.handled("unary", "Boom", "Unknown") == 1
    assert env.value("grpc_server_msg_sent_total", "unary", "Boom") == 0


async def test_unary_deadline_exceeded(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await env.unary("Slow")(b"", timeout=0.2)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(lambda: env.handled("unary", "Slow", "DeadlineExceeded") == 1)
    assert env.handled("unary", "Slow", "Canceled") == 0


async def test_unary_client_cancel_is_canceled(env: Env) -> None:
    call = env.unary("Slow")(b"", timeout=TIMEOUT)
    await eventually(lambda: env.value("grpc_server_started_total", "unary", "Slow") == 1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await eventually(lambda: env.handled("unary", "Slow", "Canceled") == 1)
    assert env.handled("unary", "Slow", "Unknown") == 0


async def test_mapped_exception_records_the_mapped_code(env: Env) -> None:
    """The metrics see the status the caller gets: the mapped one, not the raw exception."""
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await env.unary("NotFound", MAPPED)(b"", timeout=TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    await eventually(lambda: env.handled("unary", "NotFound", "NotFound", MAPPED) == 1)
    assert env.handled("unary", "NotFound", "Unknown", MAPPED) == 0


async def test_server_stream_yield_style(env: Env) -> None:
    call = env.channel.unary_stream(f"/{PROBE}/Count", _identity, _identity)(b"5", timeout=TIMEOUT)
    assert [m async for m in call] == [b"0", b"1", b"2", b"3", b"4"]
    assert env.value("grpc_server_started_total", "server_stream", "Count") == 1
    assert env.value("grpc_server_msg_received_total", "server_stream", "Count") == 1
    assert env.value("grpc_server_msg_sent_total", "server_stream", "Count") == 5
    assert env.handled("server_stream", "Count", "OK") == 1
    # Stream lifetimes stay out of the latency histogram.
    assert (
        env.metrics.registry.get_sample_value(
            "grpc_server_handling_seconds_count",
            {"grpc_type": "server_stream", "grpc_service": PROBE, "grpc_method": "Count"},
        )
        is None
    )


async def test_server_stream_abort_mid_stream(env: Env) -> None:
    call = env.channel.unary_stream(f"/{PROBE}/CountThenAbort", _identity, _identity)(b"", timeout=TIMEOUT)
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        async for message in call:
            received.append(message)
    assert failure.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert received == [b"0", b"1"]
    await eventually(lambda: env.handled("server_stream", "CountThenAbort", "OutOfRange") == 1)
    assert env.value("grpc_server_msg_sent_total", "server_stream", "CountThenAbort") == 2


async def test_server_stream_yield_style_cancelled(env: Env) -> None:
    call = env.channel.unary_stream(f"/{PROBE}/Forever", _identity, _identity)(b"", timeout=TIMEOUT)
    assert await call.read() == b"first"
    call.cancel()
    await eventually(lambda: env.handled("server_stream", "Forever", "Canceled") == 1)
    assert env.handled("server_stream", "Forever", "Unknown") == 0


async def test_health_watch_write_style_cancelled_by_client(env: Env) -> None:
    await env.health.set("", health_pb2.HealthCheckResponse.SERVING)
    stub = health_pb2_grpc.HealthStub(env.channel)
    call = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
    first = await call.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    await env.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    second = await call.read()
    assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
    call.cancel()
    labels = ("server_stream", "Watch", "grpc.health.v1.Health")
    await eventually(lambda: env.handled(*labels[:2], "Canceled", labels[2]) == 1)
    assert env.value("grpc_server_started_total", *labels) == 1
    assert env.value("grpc_server_msg_sent_total", *labels) == 2  # counted through context.write
    assert env.handled(*labels[:2], "Unknown", labels[2]) == 0
    assert env.handled(*labels[:2], "OK", labels[2]) == 0


async def test_health_check_unary(env: Env) -> None:
    await env.health.set("", health_pb2.HealthCheckResponse.SERVING)
    stub = health_pb2_grpc.HealthStub(env.channel)
    await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert env.handled("unary", "Check", "OK", "grpc.health.v1.Health") == 1
    await eventually(lambda: env.handled("unary", "Check", "NotFound", "grpc.health.v1.Health") == 1)


async def test_client_stream_and_bidi_count_messages(env: Env) -> None:
    async def three() -> AsyncIterator[bytes]:
        for chunk in (b"a", b"bb", b"ccc"):
            yield chunk

    assert (
        await env.channel.stream_unary(f"/{PROBE}/Total", _identity, _identity)(three(), timeout=TIMEOUT)
        == b"6"
    )
    assert env.value("grpc_server_msg_received_total", "client_stream", "Total") == 3
    assert env.value("grpc_server_msg_sent_total", "client_stream", "Total") == 1
    assert env.handled("client_stream", "Total", "OK") == 1

    for method in ("Echo", "EchoByRead"):
        call = env.channel.stream_stream(f"/{PROBE}/{method}", _identity, _identity)(three(), timeout=TIMEOUT)
        assert [m async for m in call] == [b"a", b"bb", b"ccc"]
        assert env.value("grpc_server_msg_received_total", "bidi_stream", method) == 3
        assert env.value("grpc_server_msg_sent_total", "bidi_stream", method) == 3
        assert env.handled("bidi_stream", method, "OK") == 1


async def test_unknown_method_is_not_counted(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await env.unary("NoSuchMethod")(b"", timeout=TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert env.value("grpc_server_started_total", "unary", "NoSuchMethod") == 0
