"""A SERVER span per RPC, child of the caller's W3C ``traceparent``, with the RPC semantic conventions.

The server has no interceptors (``service.api.rpc_handlers`` wraps each method handler once), so
neither has the OpenTelemetry gRPC instrumentation a place to hook in: :func:`trace_handler` wraps
the already-wrapped handler in one more layer, **only while tracing is on** when the handler is
registered. With tracing off the handler is returned as it is, and an RPC pays nothing at all.

The span is outermost, so it sees the status the caller gets (after the error mapping) and is the
current span for everything the handler does: its log lines carry its ids, and its ZEGO calls are its
children. Attributes: ``rpc.system`` = ``grpc``, ``rpc.service``, ``rpc.method``,
``rpc.grpc.status_code``; its status is ERROR for the codes the conventions call server errors.
``grpc.health.v1.Health`` is not traced: probes every few seconds would drown the real traces.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, Final, TypeAlias

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from service import tracing
from service.api.common import Context
from service.api.metrics_interceptor import GRPC_CODES, final_code

__all__ = ["trace_handler"]

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

_NOT_TRACED: Final = ("/grpc.health.v1.Health/",)
_NUMBER: Final = {name: code.value[0] for code, name in GRPC_CODES.items()}
#: Server-side error codes per the RPC semantic conventions (the rest are the caller's doing).
_SERVER_ERRORS: Final = frozenset(
    {"Unknown", "DeadlineExceeded", "Unimplemented", "Internal", "Unavailable", "DataLoss"}
)


def _start(tracer: Tracer, name: str, attributes: dict[str, str], context: Context) -> tuple[Span, object]:
    carrier = {
        key: value
        for key, value in (context.invocation_metadata() or ())
        if isinstance(key, str) and isinstance(value, str)
    }
    parent = tracing.extract(carrier)
    span = tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
    return span, otel_context.attach(trace.set_span_in_context(span, parent))


def _end(span: Span, token: object, context: Context, exc: BaseException | None) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]  # the token attach returned
    code = final_code(context, exc)
    span.set_attribute("rpc.grpc.status_code", _NUMBER.get(code, 2))
    if code in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, code))
    span.end()


def _unary(tracer: Tracer, inner: Callable[..., Any], name: str, attrs: dict[str, str]) -> Callable[..., Any]:
    async def traced(request: Any, context: Context) -> Any:
        span, token = _start(tracer, name, attrs, context)
        failure: BaseException | None = None
        try:
            return await inner(request, context)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            _end(span, token, context, failure)

    return traced


def _stream(
    tracer: Tracer, inner: Callable[..., Any], name: str, attrs: dict[str, str]
) -> Callable[..., AsyncIterator[Any]]:
    async def traced(request: Any, context: Context) -> AsyncIterator[Any]:
        span, token = _start(tracer, name, attrs, context)
        failure: BaseException | None = None
        try:
            generator: AsyncGenerator[Any, None] = inner(request, context)  # an rpc_handlers wrapper
            async with aclosing(generator) as responses:
                async for response in responses:
                    yield response
        except BaseException as exc:
            failure = exc
            raise
        finally:
            _end(span, token, context, failure)

    return traced


def trace_handler(handler: Handler, path: str) -> Handler:
    """``handler`` (a wrapped handler of ``service.api.rpc_handlers``) in a span per call, if tracing
    is on now; else ``handler`` itself."""
    tracer = tracing.tracer()
    if tracer is None or path.startswith(_NOT_TRACED):
        return handler
    service, _, method = path.lstrip("/").partition("/")
    name = f"{service}/{method}"
    attrs = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
    replace: Any = handler._replace  # type: ignore[attr-defined]  # grpc's handlers are namedtuples
    if handler.unary_unary is not None:
        return replace(unary_unary=_unary(tracer, handler.unary_unary, name, attrs))  # type: ignore[no-any-return]
    if handler.stream_unary is not None:
        return replace(stream_unary=_unary(tracer, handler.stream_unary, name, attrs))  # type: ignore[no-any-return]
    if handler.unary_stream is not None:
        return replace(unary_stream=_stream(tracer, handler.unary_stream, name, attrs))  # type: ignore[no-any-return]
    if handler.stream_stream is not None:
        return replace(stream_stream=_stream(tracer, handler.stream_stream, name, attrs))  # type: ignore[no-any-return]
    return handler
