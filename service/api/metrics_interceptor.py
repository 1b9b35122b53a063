"""go-grpc-prometheus's server metrics for grpc.aio (conventions §3.4, §4.2).

:class:`MetricsInterceptor` feeds the ``grpc_server_*`` families of :class:`service.metrics.Metrics`
exactly as ``grpc-ecosystem/go-grpc-prometheus`` does, so dashboards and alerts written for Go and Java
services work unchanged:

* ``started`` when the handler is entered; ``msg_received`` per request message; ``msg_sent`` per
  response message (a unary response counts only when the call succeeds);
* ``handled`` with grpc-go's code spelling once the RPC is over, and ``handling_seconds`` for unary RPCs
  only, since a stream's duration is its lifetime (§4.3).

The final code comes from ``context.code()`` (set by ``abort``, ``abort_with_status`` or ``set_code``);
a cancellation with no code is ``DeadlineExceeded`` once the deadline has passed, else ``Canceled``;
any other escaping exception is ``Unknown``. Exceptions are always re-raised, never swallowed.

Stream handlers come in two styles: async generators that ``yield`` and coroutines that ``await
context.write(msg)`` (grpc_health's ``Watch``). Both are supported: the wrapper branches on
``inspect.isasyncgen`` and hands the handler a context proxy that counts ``write`` and ``read``.

Install it **before** ``RequestContextInterceptor`` (interceptors run outermost first), so it sees the
status that interceptor maps an exception to, not the raw exception::

    server = grpc.aio.server(interceptors=[MetricsInterceptor(metrics), RequestContextInterceptor()])
    preinitialize(metrics, [agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"], ...])
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import aclosing
from typing import Any, Final, TypeAlias

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc.aio import EOF  # type: ignore[attr-defined]  # grpc-stubs lacks it; grpcio exports it
from grpc_health.v1 import health_pb2

from service.metrics import Metrics

__all__ = ["GRPC_CODES", "GRPC_TYPES", "MetricsInterceptor", "preinitialize"]

GRPC_TYPES: Final = ("unary", "client_stream", "server_stream", "bidi_stream")

#: grpc-go's ``codes.Code.String()`` spelling of every status code (``codes/code_string.go``).
GRPC_CODES: Final[Mapping[grpc.StatusCode, str]] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}
_BY_NUMBER: Final = {code.value[0]: code for code in grpc.StatusCode}

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]]"


def _rpc_type(client_streaming: bool, server_streaming: bool) -> str:
    if client_streaming:
        return "bidi_stream" if server_streaming else "client_stream"
    return "server_stream" if server_streaming else "unary"


def _current_code(context: Context) -> grpc.StatusCode | None:
    try:
        code: object = context.code()
    except Exception:  # code() is experimental; a context without it just has no code to report
        return None
    if isinstance(code, grpc.StatusCode):
        return code
    return _BY_NUMBER.get(code) if isinstance(code, int) else None


def _final_code(context: Context, exc: BaseException | None) -> str:
    """grpc-go's name of the status the client receives."""
    code = _current_code(context)
    if exc is None:
        return GRPC_CODES[code] if code is not None else "OK"
    if code is not None and code is not grpc.StatusCode.OK:
        return GRPC_CODES[code]  # abort / abort_with_status (AbortError), or set_code before raising
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        # aio leaves code() unset on cancellation: the deadline tells an expiry from a client cancel.
        remaining = context.time_remaining()
        return "DeadlineExceeded" if remaining is not None and remaining <= 0 else "Canceled"
    return "Unknown"  # what grpc sends for an exception escaping the handler


class _Recorder:
    """The label children of one method, resolved once instead of per message."""

    __slots__ = ("_handled", "_handling", "_labels", "received", "sent", "started")

    def __init__(self, metrics: Metrics, rpc_type: str, service: str, method: str) -> None:
        labels = (rpc_type, service, method)
        self._labels = labels
        self._handled = metrics.grpc_handled
        self.started = metrics.grpc_started.labels(*labels)
        self.received = metrics.grpc_msg_received.labels(*labels)
        self.sent = metrics.grpc_msg_sent.labels(*labels)
        self._handling = metrics.grpc_handling_seconds.labels(*labels) if rpc_type == "unary" else None
        for code in GRPC_CODES.values():
            self._handled.labels(*labels, code)

    def finish(self, context: Context, exc: BaseException | None, started: float) -> str:
        code = _final_code(context, exc)
        self._handled.labels(*self._labels, code).inc()
        if self._handling is not None:
            self._handling.observe(time.perf_counter() - started)
        return code


class _CountingContext:
    """Delegates to the real context, counting ``write`` (sent) and ``read`` (received) messages."""

    def __init__(self, context: Context, recorder: _Recorder) -> None:
        self._context = context
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def write(self, message: Any) -> None:
        await self._context.write(message)
        self._recorder.sent.inc()

    async def read(self) -> Any:
        message = await self._context.read()
        if message is not EOF:
            self._recorder.received.inc()
        return message


async def _counted(requests: AsyncIterable[Any], recorder: _Recorder) -> AsyncIterator[Any]:
    async for request in requests:
        recorder.received.inc()
        yield request


def _wrap_unary_response(rec: _Recorder, behavior: Callable[..., Any], streaming_request: bool) -> Any:
    async def wrapper(request: Any, context: Context) -> Any:
        rec.started.inc()
        handler_context: Any = context
        if streaming_request:
            request, handler_context = _counted(request, rec), _CountingContext(context, rec)
        else:
            rec.received.inc()
        started, exc = time.perf_counter(), None
        try:
            response = behavior(request, handler_context)
            return (await response) if inspect.isawaitable(response) else response
        except BaseException as e:  # incl. AbortError and CancelledError: recorded, then re-raised
            exc = e
            raise
        finally:
            if rec.finish(context, exc, started) == "OK":
                rec.sent.inc()

    return wrapper


def _wrap_stream_response(rec: _Recorder, behavior: Callable[..., Any], streaming_request: bool) -> Any:
    async def wrapper(request: Any, context: Context) -> AsyncIterator[Any]:
        rec.started.inc()
        if streaming_request:
            request = _counted(request, rec)
        else:
            rec.received.inc()
        started, exc = time.perf_counter(), None
        try:
            result = behavior(request, _CountingContext(context, rec))
            if inspect.isasyncgen(result):  # yield-style handler
                async with aclosing(result) as responses:
                    async for response in responses:
                        rec.sent.inc()
                        yield response
            elif inspect.isawaitable(result):  # write-style handler: its writes are counted by the proxy
                await result
            elif isinstance(result, Iterable):  # a sync generator
                for response in result:
                    rec.sent.inc()
                    yield response
        except BaseException as e:  # incl. AbortError, CancelledError, GeneratorExit: re-raised
            exc = e
            raise
        finally:
            rec.finish(context, exc, started)

    return wrapper


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Records go-grpc-prometheus's ``grpc_server_*`` metrics for every RPC with a registered handler."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # Keyed by the registered method path, so bounded by the services we serve.
        self._recorders: dict[tuple[str, str], _Recorder] = {}
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}

    def _recorder(self, path: str, rpc_type: str) -> _Recorder:
        recorder = self._recorders.get((path, rpc_type))
        if recorder is None:
            service, _, method = path.lstrip("/").partition("/")
            recorder = self._recorders[(path, rpc_type)] = _Recorder(self._metrics, rpc_type, service, method)
        return recorder

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED; Go does not count these either
            return handler
        # Handlers are registered once per method: wrap each once, not on every call.
        cached = self._wrapped.get(handler_call_details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, handler_call_details.method)
        self._wrapped[handler_call_details.method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler[Any, Any], method: str) -> grpc.RpcMethodHandler[Any, Any]:
        rpc_type = _rpc_type(handler.request_streaming, handler.response_streaming)
        rec = self._recorder(method, rpc_type)
        codecs: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary_response(rec, handler.unary_unary, False), **codecs
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary_response(rec, handler.stream_unary, True), **codecs
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream_response(rec, handler.unary_stream, False), **codecs
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream_response(rec, handler.stream_stream, True), **codecs
            )
        return handler


def preinitialize(metrics: Metrics, services: Iterable[ServiceDescriptor]) -> None:
    """Create every method's ``grpc_server_*`` series at zero, with every code, as Go's
    ``preRegisterMethod`` does. ``grpc.health.v1.Health`` is always included.

    Example::

        preinitialize(metrics, [session_service_pb2.DESCRIPTOR.services_by_name["SessionService"]])
    """
    health: ServiceDescriptor = health_pb2.DESCRIPTOR.services_by_name["Health"]
    done: set[str] = set()
    for service in (health, *services):
        if service.full_name in done:
            continue
        done.add(service.full_name)
        for method in service.methods:
            rpc_type = _rpc_type(method.client_streaming, method.server_streaming)
            _Recorder(metrics, rpc_type, service.full_name, method.name)
