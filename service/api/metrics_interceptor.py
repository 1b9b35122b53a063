"""go-grpc-prometheus's server metrics for grpc.aio (conventions §3.4, §4.2): what the handler wrapper
of ``service.api.rpc_handlers`` records for every RPC.

It feeds the ``grpc_server_*`` families of :class:`service.metrics.Metrics` exactly as
``grpc-ecosystem/go-grpc-prometheus`` does, so dashboards and alerts written for Go and Java services
work unchanged:

* ``started`` when the handler is entered; ``msg_received`` per request message; ``msg_sent`` per
  response message (a unary response counts only when the call succeeds);
* ``handled`` with grpc-go's code spelling once the RPC is over, and ``handling_seconds`` for unary RPCs
  only, since a stream's duration is its lifetime (§4.3).

The final code comes from ``context.code()`` (set by ``abort``, ``abort_with_status`` or ``set_code``);
a cancellation with no code is ``DeadlineExceeded`` once the deadline has passed, else ``Canceled``;
any other escaping exception is ``Unknown``. Exceptions are always re-raised, never swallowed.

Stream handlers come in two styles: async generators that ``yield`` and coroutines that ``await
context.write(msg)`` (grpc_health's ``Watch``). The wrapper counts the first as it forwards them and
hands the handler a :class:`CountingContext`, which counts ``write`` and ``read``.

A :class:`Recorder` holds one method's label children, resolved once when the method is registered,
``handled`` for every code included: a call does no ``.labels()`` lookup. :func:`preinitialize` creates
every method's series at zero from the service descriptors, as Go's ``preRegisterMethod`` does::

    preinitialize(metrics, [agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"], ...])
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any, Final

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc.aio import EOF  # type: ignore[attr-defined]  # grpc-stubs lacks it; grpcio exports it
from grpc_health.v1 import health_pb2

from service.api.common import Context
from service.metrics import Metrics

__all__ = [
    "GRPC_CODES",
    "GRPC_TYPES",
    "CountingContext",
    "Recorder",
    "counted",
    "final_code",
    "preinitialize",
    "rpc_type",
]

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


def rpc_type(client_streaming: bool, server_streaming: bool) -> str:
    """go-grpc-prometheus's ``grpc_type`` label value."""
    if client_streaming:
        return "bidi_stream" if server_streaming else "client_stream"
    return "server_stream" if server_streaming else "unary"


def _current_code(context: Context) -> grpc.StatusCode | None:
    try:
        code: object = context.code()
    except Exception:  # code() is experimental; a context without it just has no code to report
        return None
    if code is None or isinstance(code, grpc.StatusCode):
        return code
    return _BY_NUMBER.get(code) if isinstance(code, int) else None


def final_code(context: Context, exc: BaseException | None) -> str:
    """grpc-go's name of the status the client receives, once the handler returned or raised ``exc``."""
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


class Recorder:
    """The label children of one method, resolved once instead of per call."""

    __slots__ = ("handled", "handling", "received", "sent", "started")

    def __init__(self, metrics: Metrics, rpc_type: str, service: str, method: str) -> None:
        labels = (rpc_type, service, method)
        self.started = metrics.grpc_started.labels(*labels)
        self.received = metrics.grpc_msg_received.labels(*labels)
        self.sent = metrics.grpc_msg_sent.labels(*labels)
        self.handling = metrics.grpc_handling_seconds.labels(*labels) if rpc_type == "unary" else None
        #: ``grpc_server_handled_total`` by grpc-go code name; creating them all is the pre-initialisation.
        self.handled = {code: metrics.grpc_handled.labels(*labels, code) for code in GRPC_CODES.values()}

    def finish(self, context: Context, exc: BaseException | None, started: float) -> str:
        """Count the call as handled (``exc``: what escaped the handler) and return its code's name."""
        code = final_code(context, exc)
        self.handled[code].inc()
        if self.handling is not None:
            self.handling.observe(time.perf_counter() - started)
        return code


class CountingContext:
    """Delegates to the real context, counting ``write`` (sent) and ``read`` (received) messages."""

    def __init__(self, context: Context, recorder: Recorder) -> None:
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


async def counted(requests: AsyncIterable[Any], recorder: Recorder) -> AsyncIterator[Any]:
    """The request stream, counting each message received."""
    async for request in requests:
        recorder.received.inc()
        yield request


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
            Recorder(
                metrics,
                rpc_type(method.client_streaming, method.server_streaming),
                service.full_name,
                method.name,
            )
