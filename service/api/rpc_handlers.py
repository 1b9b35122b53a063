"""The one wrapper every RPC handler gets: request id, log line, error mapping and metrics.

:class:`RpcHandlers` stands in for the server while servicers are registered (the generated
``add_*Servicer_to_server`` functions call its ``add_registered_method_handlers`` and
``add_generic_rpc_handlers``), wraps each method handler once, and is then installed on the
``grpc.aio`` server as its only generic handler. A call pays for one wrapper with one ``try``: no
``grpc.aio.ServerInterceptor`` chain (a few coroutines per call), and no registered method, each of
which grpc.aio's serving loop would ``asyncio.wait`` on for every call.

Every method, health and reflection included, gets go-grpc-prometheus's metrics
(``service.api.metrics_interceptor``), recorded after the error mapping below, so they see the
status the caller gets. Our own services (``/agentgw.v1.*``) also get:

* a request id (``service.api.request_ids``): the caller's ``x-request-id`` if it is 1-64 printable
  characters, else a new one. It is set in ``service.logs.request_id_var`` for every log line of the
  call and sent back as trailing metadata ``x-request-id``, on success and on error, unary or stream;
* one ``rpc ok`` log line per successful unary call, built only when INFO is enabled;
* rich errors: an exception escaping the handler becomes a ``google.rpc.Status`` by
  ``service.api.status``, sent in the trailers next to the request id. ``AbortError`` (the handler
  aborted on its own) and cancellation pass through untouched, as grpc requires.

Every method also gets a request deserializer that cannot fail: bytes that do not parse as the
request message (including a ``Struct`` nested beyond protobuf's recursion limit) become an
:class:`Undecodable` marker, which the wrapper answers with INVALID_ARGUMENT (after authentication,
so an unauthenticated caller learns nothing). Without it grpc itself answers UNKNOWN ("Unexpected
DecodeError") and logs a traceback.

A client that drops a stream ends its handler with a cancellation: recorded in the metrics, logged at
DEBUG at most. The generator may then be closed by asyncio's finalizer in another context, where the
request-id contextvar token cannot be reset (and need not be: the call's task, and its context, are gone).

While tracing is on, each wrapped handler gets one more layer outside it, a span per call
(``service.api.rpc_tracing``); while it is off, nothing.

(This module was ``service.api.interceptors``; it never held a ``grpc.aio.ServerInterceptor``.)

Usage::

    handlers = RpcHandlers(metrics)
    handlers.register(session_service_pb2_grpc.add_SessionServiceServicer_to_server, servicer)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers,))
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc
from grpc_status import rpc_status

from service import errors
from service.api.audit import AUDITED_METHODS, AuditHook
from service.api.common import Context
from service.api.metrics_interceptor import CountingContext, Recorder, counted, rpc_type
from service.api.request_ids import REQUEST_ID_HEADER, request_id_of
from service.api.rpc_tracing import trace_handler
from service.api.status import to_status
from service.auth.authenticator import Authenticator
from service.auth.principal import principal_var
from service.domain.audit import PendingAudit
from service.logs import request_id_var
from service.metrics import Metrics

__all__ = ["RpcHandlers", "Undecodable"]

log = logging.getLogger("agentgw.rpc")

_OUR_PREFIX = "/agentgw.v1."
_DEADLINE_SLACK_SECONDS = 0.1

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Authenticate: TypeAlias = "Callable[[Context], Awaitable[None]] | None"
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_DETAILS_KEY: str = rpc_status.GRPC_DETAILS_METADATA_KEY  # type: ignore[attr-defined]
S = TypeVar("S")


class Undecodable:
    """What the request deserializer returns for bytes that are not the request message."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def invalid(self) -> errors.InvalidArgument:
        """The caller's error: the request does not parse (the parser's words, clipped later)."""
        return errors.InvalidArgument(
            [errors.FieldViolation("", f"the request is not a valid message: {self.error}")],
            "the request bytes do not decode as the request message",
        )


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, RecursionError...: all of them the caller's bytes
            return Undecodable(exc)

    return deserialize


def _reset(token: contextvars.Token[str | None] | None) -> None:
    if token is not None:
        # A dropped stream's generator can be closed by asyncio's finalizer, in another context.
        with contextlib.suppress(ValueError):
            request_id_var.reset(token)


async def _fail(
    exc: Exception,
    method: str,
    rid: str,
    context: Context,
    audit: Callable[[grpc.StatusCode], Awaitable[None]] | None = None,
) -> NoReturn:
    remaining = context.time_remaining()
    spent = remaining is not None and remaining < _DEADLINE_SLACK_SECONDS
    status = to_status(exc, rid, deadline_spent=spent)
    if audit is not None:
        await audit(_CODES[status.code])
    if status.code == grpc.StatusCode.INTERNAL.value[0] or isinstance(exc, errors.StoreError):
        # The caller was told to see the logs (or only that the ledger is unavailable): keep why.
        log.error("rpc failed", exc_info=exc, extra={"method": method})
    else:
        log.info(
            "rpc rejected", extra={"method": method, "reason": type(exc).__name__, "detail": status.message}
        )
    # What abort_with_status sends, plus the request id: abort_with_status would replace the
    # trailing metadata set earlier with the status alone.
    trailers: list[tuple[str, str | bytes]] = [(_DETAILS_KEY, status.SerializeToString())]
    if rid:
        trailers.append((REQUEST_ID_HEADER, rid))
    await context.abort(_CODES[status.code], status.message, trailing_metadata=tuple(trailers))
    raise AssertionError("abort returned")  # it raises AbortError


@dataclass(frozen=True, slots=True)
class _Method:
    """What the wrapper of one method knows: its metrics, its handler, and what it adds."""

    rec: Recorder
    behavior: Callable[..., Any]
    path: str
    ours: bool
    """One of our services (``/agentgw.v1.*``): request id, authentication, rich errors."""
    streaming_request: bool
    authenticate: Authenticate = None
    audit: AuditHook | None = None
    """Mutating RPCs only: hears how each call ended, before the caller gets the answer."""


def _open_call(method: _Method, context: Context) -> tuple[str, contextvars.Token[str | None] | None]:
    """For our services: the call's request id, set for its log lines and in its trailers."""
    if not method.ours:
        return "", None
    rid = request_id_of(context)
    token = request_id_var.set(rid)
    context.set_trailing_metadata(((REQUEST_ID_HEADER, rid),))
    return rid, token


def _audit_status(
    method: _Method, pending: PendingAudit | None, request: Any, rid: str
) -> Callable[[grpc.StatusCode], Awaitable[None]] | None:
    """What :func:`_fail` calls with the status of a failed audited call."""
    hook = method.audit
    if hook is None:
        return None

    async def on_status(code: grpc.StatusCode) -> None:
        await hook.end(pending, method.path, request, None, code.name, rid)

    return on_status


def _unary_response(method: _Method) -> Callable[[Any, Context], Any]:
    """The wrapper of a unary-unary or stream-unary handler."""
    rec, behavior, path = method.rec, method.behavior, method.path
    audit, authenticate = method.audit, method.authenticate

    async def wrapper(request: Any, context: Context) -> Any:
        rec.started.inc()
        handler_context: Any = context
        if method.streaming_request:
            request, handler_context = counted(request, rec), CountingContext(context, rec)
        else:
            rec.received.inc()
        started = time.perf_counter()
        rid, token = _open_call(method, context)
        pending = None
        try:
            try:
                if authenticate is not None:
                    await authenticate(context)
                if isinstance(request, Undecodable):
                    raise request.invalid()
                if audit is not None:
                    pending = audit.begin(path, request, rid)
                response = behavior(request, handler_context)
                if inspect.isawaitable(response):
                    response = await response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                if not method.ours and not isinstance(request, Undecodable):
                    raise
                await _fail(exc, path, rid, context, _audit_status(method, pending, request, rid))
            if audit is not None:
                await audit.end(pending, path, request, response, "OK", rid)
            if method.ours and log.isEnabledFor(logging.INFO):
                log.info(
                    "rpc ok", extra={"method": path, "ms": round((time.perf_counter() - started) * 1e3, 2)}
                )
        except BaseException as exc:  # incl. AbortError and CancelledError: recorded, then re-raised
            rec.finish(context, exc, started)
            raise
        finally:
            _reset(token)
        if rec.finish(context, None, started) == "OK":
            rec.sent.inc()
        return response

    return wrapper


def _stream_response(method: _Method) -> Callable[[Any, Context], AsyncIterator[Any]]:
    """The wrapper of a unary-stream or stream-stream handler, yield-style or write-style."""
    rec, behavior = method.rec, method.behavior

    async def wrapper(request: Any, context: Context) -> AsyncIterator[Any]:
        rec.started.inc()
        if method.streaming_request:
            request = counted(request, rec)
        else:
            rec.received.inc()
        started = time.perf_counter()
        rid, token = _open_call(method, context)
        try:
            try:
                if method.authenticate is not None:
                    await method.authenticate(context)
                if isinstance(request, Undecodable):
                    raise request.invalid()
                result = behavior(request, CountingContext(context, rec))
                if inspect.isasyncgen(result):  # yield-style handler
                    async with contextlib.aclosing(result) as responses:
                        async for response in responses:
                            rec.sent.inc()
                            yield response
                elif inspect.isawaitable(result):  # write-style: its writes are counted by the context
                    await result
                elif isinstance(result, Iterable):  # a sync generator
                    for response in result:
                        rec.sent.inc()
                        yield response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                if not method.ours and not isinstance(request, Undecodable):
                    raise
                await _fail(exc, method.path, rid, context)
        except BaseException as exc:  # incl. AbortError, CancelledError, GeneratorExit: re-raised
            rec.finish(context, exc, started)
            raise
        finally:
            _reset(token)
        rec.finish(context, None, started)

    return wrapper


def _authenticator_hook(authenticator: Authenticator | None) -> Authenticate:
    """What runs before each of our handlers: authenticate, and set the principal for the call.

    ``None`` when authentication is off, so an anonymous gateway pays nothing per call. Each call
    runs in a task of its own, so the principal set here is seen by that call only.
    """
    if authenticator is None or not authenticator.enabled:
        return None

    async def authenticate(context: Context) -> None:
        auth_context = context.auth_context() if authenticator.needs_auth_context else None
        principal = await authenticator.authenticate(context.invocation_metadata(), auth_context)
        principal_var.set(principal)

    return authenticate


def _wrap(
    handler: Handler,
    path: str,
    metrics: Metrics,
    authenticate: Authenticate = None,
    audit: AuditHook | None = None,
) -> Handler:
    service, _, name = path.lstrip("/").partition("/")
    rec = Recorder(metrics, rpc_type(handler.request_streaming, handler.response_streaming), service, name)
    ours = path.startswith(_OUR_PREFIX)
    if not ours:
        authenticate = None  # health and reflection stay open
    if path not in AUDITED_METHODS:
        audit = None
    codecs: dict[str, Any] = {
        "request_deserializer": _tolerant(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }

    def method(behavior: Callable[..., Any], streaming_request: bool, audited: bool = False) -> _Method:
        return _Method(rec, behavior, path, ours, streaming_request, authenticate, audit if audited else None)

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary_response(method(handler.unary_unary, False, audited=True)), **codecs
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _unary_response(method(handler.stream_unary, True)), **codecs
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _stream_response(method(handler.unary_stream, False)), **codecs
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _stream_response(method(handler.stream_stream, True)), **codecs
        )
    return handler


class RpcHandlers(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Every method handler of the server, each wrapped once; install it as the server's generic handler."""

    def __init__(
        self, metrics: Metrics, authenticator: Authenticator | None = None, audit: AuditHook | None = None
    ) -> None:
        self._metrics = metrics
        self._authenticate = _authenticator_hook(authenticator)
        self._audit = audit
        self._methods: dict[str, Handler] = {}
        self._generic: list[grpc.GenericRpcHandler[Any, Any]] = []
        # Generic handlers are resolved per call: wrap what they return once per method, not per call.
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def register(self, add_to_server: Callable[[S, Any], None], servicer: S) -> None:
        """Register ``servicer`` through its generated ``add_*Servicer_to_server`` function."""
        add_to_server(servicer, self)

    def add_registered_method_handlers(self, service: str, method_handlers: Mapping[str, Handler]) -> None:
        """What ``grpc.aio.Server`` offers the generated code: the methods of ``service``, by name."""
        for name, handler in method_handlers.items():
            path = f"/{service}/{name}"
            self._methods[path] = trace_handler(
                _wrap(handler, path, self._metrics, self._authenticate, self._audit), path
            )

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        """Handlers asked per call for methods not registered by name (the generated code adds both)."""
        self._generic.extend(generic_rpc_handlers)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        """The wrapped handler of the called method; ``None`` (grpc answers UNIMPLEMENTED) if unknown."""
        method: str = handler_call_details.method
        found = self._methods.get(method)
        if found is not None:
            return found
        for generic in self._generic:
            handler = generic.service(handler_call_details)
            if handler is not None:
                cached = self._wrapped.get(method)
                if cached is not None and cached[0] is handler:
                    return cached[1]
                wrapped = trace_handler(
                    _wrap(handler, method, self._metrics, self._authenticate, self._audit), method
                )
                self._wrapped[method] = (handler, wrapped)
                return wrapped
        return None  # unknown method: not counted, as in Go
