"""The gRPC interceptor that gives every agentgw RPC a request id, a log line and rich errors.

It wraps only our own services (``/agentgw.v1.*``): health and reflection are grpc's code, and
health's ``Watch`` is a write-style stream handler that a yield-style wrapper would break.

An exception escaping a handler is turned into a ``google.rpc.Status`` by ``service.api.status``
and sent with ``abort_with_status``. ``AbortError`` (the handler aborted on its own) and
cancellation pass through untouched, as grpc requires.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from service.api.status import to_status
from service.logs import request_id_var

__all__ = ["REQUEST_ID_HEADER", "RequestContextInterceptor"]

log = logging.getLogger("agentgw.rpc")

REQUEST_ID_HEADER = "x-request-id"
_OUR_PREFIX = "/agentgw.v1."
_DEADLINE_SLACK_SECONDS = 0.1

UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
StreamBehavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if (
            key == REQUEST_ID_HEADER
            and isinstance(value, str)
            and 0 < len(value) <= 64
            and value.isprintable()
        ):
            return value
    return uuid.uuid4().hex


async def _fail(exc: Exception, method: str, rid: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    remaining = context.time_remaining()
    spent = remaining is not None and remaining < _DEADLINE_SLACK_SECONDS
    status = to_status(exc, rid, deadline_spent=spent)
    if status.code == grpc.StatusCode.INTERNAL.value[0]:
        log.error("rpc failed", exc_info=exc, extra={"method": method})
    else:
        log.info(
            "rpc rejected", extra={"method": method, "reason": type(exc).__name__, "detail": status.message}
        )
    # grpc-stubs lacks the aio abort_with_status; it exists since grpcio 1.38.
    await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]


class RequestContextInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Sets the request id context, logs one line per RPC, and maps errors to rich statuses."""

    def __init__(self) -> None:
        # Handlers are registered once per method: wrap each once, not on every call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(_OUR_PREFIX):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = handler
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    @staticmethod
    def _wrap_unary(method: str, behavior: UnaryBehavior) -> UnaryBehavior:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            rid = _request_id(context)
            token = request_id_var.set(rid)
            started = time.perf_counter()
            try:
                context.set_trailing_metadata(((REQUEST_ID_HEADER, rid),))
                response = await behavior(request, context)
                log.info(
                    "rpc ok", extra={"method": method, "ms": round((time.perf_counter() - started) * 1e3, 2)}
                )
                return response
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                await _fail(exc, method, rid, context)
            finally:
                request_id_var.reset(token)

        return wrapper

    @staticmethod
    def _wrap_stream(method: str, behavior: StreamBehavior) -> StreamBehavior:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            rid = _request_id(context)
            token = request_id_var.set(rid)
            try:
                async for item in behavior(request, context):
                    yield item
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                await _fail(exc, method, rid, context)
            finally:
                request_id_var.reset(token)

        return wrapper
