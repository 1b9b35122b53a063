"""The client's exception tree, decoded from the ``google.rpc.Status`` agentgw sends with every error.

Every failed call raises an :class:`AgentGwError` subclass chosen by the status code, refined by the
``ErrorInfo`` reason where one code covers different situations (``RESOURCE_EXHAUSTED`` is a full pool
or a slow subscriber)::

    AgentGwError
    ├── InvalidArgument          .field_violations (BadRequest)
    ├── NotFound                 .resource_type, .resource_name (ResourceInfo)
    ├── AlreadyExists            .resource_type, .resource_name
    ├── FailedPrecondition       .violations (PreconditionFailure)
    │   └── CursorExpired
    ├── ResourceExhausted
    │   ├── CapacityExhausted    .quota_violations (QuotaFailure), .retry_delay (RetryInfo)
    │   └── SubscriberTooSlow
    ├── OutOfRange
    ├── Unavailable              .retry_delay
    ├── DeadlineExceeded
    ├── Unauthenticated
    ├── PermissionDenied
    ├── Cancelled
    └── Internal                 (also UNKNOWN, DATA_LOSS, UNIMPLEMENTED, ABORTED)

The status travels in the ``grpc-status-details-bin`` trailer, decoded here with protobuf alone (no
grpcio-status dependency).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "AgentGwError",
    "AlreadyExists",
    "Cancelled",
    "CapacityExhausted",
    "CursorExpired",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "QuotaViolation",
    "ResourceExhausted",
    "SubscriberTooSlow",
    "Unauthenticated",
    "Unavailable",
    "from_rpc_error",
]

_DETAILS_KEY = "grpc-status-details-bin"
_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.QuotaFailure,
    error_details_pb2.RetryInfo,
    error_details_pb2.ResourceInfo,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.RequestInfo,
    error_details_pb2.DebugInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
)


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request (``agent.llm.url``) and what is wrong with it."""

    field: str
    description: str


@dataclass(frozen=True)
class QuotaViolation:
    """One exhausted quota: ``subject`` (``pool:digital_human``) and a description."""

    subject: str
    description: str


class AgentGwError(Exception):
    """A failed agentgw call. ``code`` is the gRPC status code, ``reason`` the ErrorInfo reason."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        request_id: str = "",
        details: Sequence[Message] = (),
    ) -> None:
        super().__init__(f"{code.name}: {message}" + (f" [{reason}]" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.request_id = request_id
        self.details: list[Message] = list(details)

    def detail(self, kind: type[Message]) -> Message | None:
        """The first detail message of this type, or None."""
        return next((d for d in self.details if isinstance(d, kind)), None)

    @property
    def retry_delay(self) -> float | None:
        """The server's RetryInfo delay in seconds, or None when it sent none."""
        info = self.detail(error_details_pb2.RetryInfo)
        if not isinstance(info, error_details_pb2.RetryInfo) or not info.HasField("retry_delay"):
            return None
        return float(info.retry_delay.ToNanoseconds()) / 1e9


class InvalidArgument(AgentGwError):
    """INVALID_ARGUMENT: the request is wrong; ``field_violations`` say where."""

    @property
    def field_violations(self) -> list[FieldViolation]:
        bad = self.detail(error_details_pb2.BadRequest)
        if not isinstance(bad, error_details_pb2.BadRequest):
            return []
        return [FieldViolation(v.field, v.description) for v in bad.field_violations]


class _ResourceError(AgentGwError):
    @property
    def resource_type(self) -> str:
        info = self.detail(error_details_pb2.ResourceInfo)
        return info.resource_type if isinstance(info, error_details_pb2.ResourceInfo) else ""

    @property
    def resource_name(self) -> str:
        info = self.detail(error_details_pb2.ResourceInfo)
        return info.resource_name if isinstance(info, error_details_pb2.ResourceInfo) else ""


class NotFound(_ResourceError):
    """NOT_FOUND: the agent, session or instance does not exist."""


class AlreadyExists(_ResourceError):
    """ALREADY_EXISTS: an agent with this id exists."""


class FailedPrecondition(AgentGwError):
    """FAILED_PRECONDITION: the session's state forbids the call."""

    @property
    def violations(self) -> list[tuple[str, str, str]]:
        """(type, subject, description) of each PreconditionFailure violation."""
        failure = self.detail(error_details_pb2.PreconditionFailure)
        if not isinstance(failure, error_details_pb2.PreconditionFailure):
            return []
        return [(v.type, v.subject, v.description) for v in failure.violations]


class CursorExpired(FailedPrecondition):
    """The watch cursor is older than the gateway's retention: list what you need, watch from now."""


class ResourceExhausted(AgentGwError):
    """RESOURCE_EXHAUSTED."""


class CapacityExhausted(ResourceExhausted):
    """The gateway's pool (or ZEGO's concurrency limit) is full; ``retry_delay`` says when to retry."""

    @property
    def quota_violations(self) -> list[QuotaViolation]:
        failure = self.detail(error_details_pb2.QuotaFailure)
        if not isinstance(failure, error_details_pb2.QuotaFailure):
            return []
        return [QuotaViolation(v.subject, v.description) for v in failure.violations]


class SubscriberTooSlow(ResourceExhausted):
    """The watch fell too far behind and was ended; ``events.watch()`` resumes by itself."""


class OutOfRange(AgentGwError):
    """OUT_OF_RANGE: a cursor ahead of the log."""


class Unavailable(AgentGwError):
    """UNAVAILABLE: the gateway or ZEGO is unreachable or rate-limited; retryable."""


class DeadlineExceeded(AgentGwError):
    """DEADLINE_EXCEEDED: the call's deadline passed."""


class Unauthenticated(AgentGwError):
    """UNAUTHENTICATED: missing or bad credentials."""


class PermissionDenied(AgentGwError):
    """PERMISSION_DENIED."""


class Cancelled(AgentGwError):
    """CANCELLED."""


class Internal(AgentGwError):
    """INTERNAL (and UNKNOWN, DATA_LOSS, UNIMPLEMENTED, ABORTED): a fault of the gateway."""


_S = grpc.StatusCode
_BY_REASON: dict[str, type[AgentGwError]] = {
    "CAPACITY_EXHAUSTED": CapacityExhausted,
    "UPSTREAM_CONCURRENCY_LIMIT": CapacityExhausted,
    "SUBSCRIBER_TOO_SLOW": SubscriberTooSlow,
    "CURSOR_EXPIRED": CursorExpired,
}
_BY_CODE: dict[grpc.StatusCode, type[AgentGwError]] = {
    _S.INVALID_ARGUMENT: InvalidArgument,
    _S.NOT_FOUND: NotFound,
    _S.ALREADY_EXISTS: AlreadyExists,
    _S.FAILED_PRECONDITION: FailedPrecondition,
    _S.RESOURCE_EXHAUSTED: ResourceExhausted,
    _S.OUT_OF_RANGE: OutOfRange,
    _S.UNAVAILABLE: Unavailable,
    _S.DEADLINE_EXCEEDED: DeadlineExceeded,
    _S.UNAUTHENTICATED: Unauthenticated,
    _S.PERMISSION_DENIED: PermissionDenied,
    _S.CANCELLED: Cancelled,
}


def _unpack(status: status_pb2.Status) -> list[Message]:
    details: list[Message] = []
    for packed in status.details:
        for kind in _DETAIL_TYPES:
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                details.append(message)
                break
    return details


def _status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    trailers = cast("Iterable[tuple[str, str | bytes]]", error.trailing_metadata() or ())
    for key, value in trailers:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except DecodeError:
                return None  # a hostile or broken peer: fall back to the bare code
            return status
    return None


def from_rpc_error(error: grpc.aio.AioRpcError) -> AgentGwError:
    """The exception for a failed call: class from the code (and ErrorInfo reason), details decoded."""
    code = error.code()
    status = _status_of(error)
    message = status.message if status is not None and status.message else (error.details() or "")
    details = _unpack(status) if status is not None else []
    info = next((d for d in details if isinstance(d, error_details_pb2.ErrorInfo)), None)
    request = next((d for d in details if isinstance(d, error_details_pb2.RequestInfo)), None)
    reason = info.reason if info is not None else ""
    kind = _BY_REASON.get(reason) if code in (_S.RESOURCE_EXHAUSTED, _S.FAILED_PRECONDITION) else None
    kind = kind or _BY_CODE.get(code, Internal)
    return kind(
        code,
        message,
        reason=reason,
        metadata=dict(info.metadata) if info is not None else None,
        request_id=request.request_id if request is not None else "",
        details=details,
    )
