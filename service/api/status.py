"""The one error-mapping table: domain and ZEGO exceptions -> ``google.rpc.Status``.

Every non-OK status carries an ``ErrorInfo`` (domain ``agentgw``) and a ``RequestInfo`` with the
request id, plus ``BadRequest``, ``QuotaFailure``, ``RetryInfo``, ``ResourceInfo`` or
``PreconditionFailure`` where they apply (conventions §2). ZEGO errors put ``zego_code``,
``zego_request_id`` and ``zego_action`` in the ErrorInfo metadata.

The table is ordered: the first rule whose exception type (and optional predicate) matches wins,
so specific classes come before their bases. Unknown exceptions become INTERNAL with a generic
message, so nothing internal (or secret) leaks to the caller. A store error (``errors.StoreError``:
the ledger's adapter translated its driver's failure) is UNAVAILABLE with a RetryInfo, a conflict
ABORTED, and either gets a fixed message: the driver's text (SQL, a file path) stays in the logs.

A status travels in the trailers (``grpc-message`` and ``grpc-status-details-bin``, base64), and a
trailer block beyond gRPC's metadata limit (8 KiB soft, 16 KiB hard by default) turns the whole answer
into the transport's RESOURCE_EXHAUSTED. So every status is bounded whatever the input echoed in it:
the message is clipped to :data:`MAX_MESSAGE_BYTES`, every other string to :data:`MAX_DETAIL_BYTES`,
and a ``BadRequest`` keeps at most :data:`MAX_FIELD_VIOLATIONS` violations (within
:data:`MAX_BAD_REQUEST_BYTES`) followed by one "and N more".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from service import errors
from service.zego import exceptions as zx

__all__ = [
    "DOMAIN",
    "MAX_BAD_REQUEST_BYTES",
    "MAX_DETAIL_BYTES",
    "MAX_FIELD_VIOLATIONS",
    "MAX_MESSAGE_BYTES",
    "RULES",
    "Rule",
    "clip",
    "to_status",
]

DOMAIN = "agentgw"
UPSTREAM_RETRY_SECONDS = 1.0
"""RetryInfo delay suggested after a transient ZEGO failure."""
MAX_MESSAGE_BYTES = 400
"""The status message, in UTF-8 bytes (percent-encoded in ``grpc-message``: up to 3x as many)."""
MAX_DETAIL_BYTES = 200
"""Any other string of a status: a field path, a description, a resource name, a metadata value."""
MAX_FIELD_VIOLATIONS = 20
"""Field violations listed in a BadRequest; the rest are summed up in one "and N more"."""
MAX_BAD_REQUEST_BYTES = 2500
"""The listed violations' encoded size; the serialized status stays well under 4 KiB."""

Details = Callable[[BaseException], Sequence[Message]]


@dataclass(frozen=True)
class Rule:
    """How one exception type becomes a status."""

    exc_type: type[BaseException]
    code: grpc.StatusCode
    reason: str | None = None
    """ErrorInfo reason; None takes the exception's own ``reason`` attribute."""
    details: Details | None = None
    when: Callable[[BaseException], bool] | None = None


def _retry(seconds: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def clip(text: str, limit: int = MAX_DETAIL_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, marked with "..." when cut."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode("utf-8", "ignore") + "..."


def _bad_request(exc: BaseException) -> Sequence[Message]:
    assert isinstance(exc, errors.InvalidArgument)
    request = error_details_pb2.BadRequest()
    size = 0
    for v in exc.violations:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=clip(v.field), description=clip(v.description)
        )
        size += violation.ByteSize() + 3  # the repeated field's tag and length
        if len(request.field_violations) == MAX_FIELD_VIOLATIONS or size > MAX_BAD_REQUEST_BYTES:
            break
        request.field_violations.append(violation)
    left = len(exc.violations) - len(request.field_violations)
    if left:
        request.field_violations.add(description=f"and {left} more")
    return [request]


def _resource(exc: BaseException) -> Sequence[Message]:
    assert isinstance(exc, errors.NotFound)
    return [
        error_details_pb2.ResourceInfo(
            resource_type=clip(exc.resource_type), resource_name=clip(exc.resource_name)
        )
    ]


def _precondition(exc: BaseException) -> Sequence[Message]:
    assert isinstance(exc, errors.FailedPrecondition)
    violation = error_details_pb2.PreconditionFailure.Violation(
        type="STATE", subject=clip(exc.subject), description=clip(exc.message)
    )
    return [error_details_pb2.PreconditionFailure(violations=[violation])]


def _capacity(exc: BaseException) -> Sequence[Message]:
    assert isinstance(exc, errors.CapacityExhausted)
    if isinstance(exc, errors.QuotaExhausted):
        violation = error_details_pb2.QuotaFailure.Violation(
            subject=f"caller:{exc.caller}/pool:{exc.pool}",
            description=f"{exc.in_use} of the caller's quota of {exc.limit} concurrent {exc.pool} sessions",
        )
    else:
        violation = error_details_pb2.QuotaFailure.Violation(
            subject=f"pool:{exc.pool}",
            description=f"{exc.in_use} of {exc.limit} concurrent {exc.pool} instances in use",
        )
    return [error_details_pb2.QuotaFailure(violations=[violation]), _retry(exc.retry_after_seconds)]


def _retry_after(exc: BaseException) -> Sequence[Message]:
    return [_retry(getattr(exc, "retry_after_seconds", UPSTREAM_RETRY_SECONDS))]


def _upstream_quota(exc: BaseException) -> Sequence[Message]:
    assert isinstance(exc, zx.ZegoApiError)
    violation = error_details_pb2.QuotaFailure.Violation(
        subject=f"zego:{exc.action}", description=f"ZEGO concurrency limit (code {exc.code})"
    )
    return [error_details_pb2.QuotaFailure(violations=[violation]), _retry(UPSTREAM_RETRY_SECONDS * 5)]


def _is_gateway_format_code(exc: BaseException) -> bool:
    # 1000000xx codes reject the shape of *our* signed request, not the caller's input: our bug.
    return isinstance(exc, zx.ZegoApiError) and 100000000 <= exc.code < 100001000


S = grpc.StatusCode
RULES: tuple[Rule, ...] = (
    # The gateway's own errors.
    Rule(errors.InvalidArgument, S.INVALID_ARGUMENT, None, _bad_request),
    Rule(errors.NotFound, S.NOT_FOUND, None, _resource),
    Rule(errors.FailedPrecondition, S.FAILED_PRECONDITION, None, _precondition),
    Rule(errors.CapacityExhausted, S.RESOURCE_EXHAUSTED, None, _capacity),
    Rule(errors.Unavailable, S.UNAVAILABLE, None, _retry_after),
    Rule(errors.SubscriberTooSlow, S.RESOURCE_EXHAUSTED),
    Rule(errors.OutOfRange, S.OUT_OF_RANGE),
    Rule(errors.Unauthenticated, S.UNAUTHENTICATED),
    Rule(errors.PermissionDenied, S.PERMISSION_DENIED),
    # The ledger failed (the store adapter translated its driver's error). Its message may quote
    # the driver or name a file, so the caller gets a fixed one (see _STORE_MESSAGES).
    Rule(errors.TransitionConflict, S.ABORTED),
    Rule(errors.DuplicateEvent, S.ABORTED),
    Rule(errors.UnstorableValue, S.INTERNAL),
    Rule(errors.StoreError, S.UNAVAILABLE, None, _retry_after),
    # ZEGO answered with a non-zero Code (spec §7).
    Rule(zx.ZegoAgentAlreadyExists, S.ALREADY_EXISTS, "AGENT_ALREADY_EXISTS"),
    Rule(zx.ZegoAgentNotFound, S.NOT_FOUND, "AGENT_NOT_FOUND"),
    Rule(zx.ZegoInstanceNotFound, S.NOT_FOUND, "INSTANCE_NOT_FOUND"),
    Rule(zx.ZegoDigitalHumanNotFound, S.NOT_FOUND, "DIGITAL_HUMAN_NOT_FOUND"),
    Rule(zx.ZegoConcurrencyLimit, S.RESOURCE_EXHAUSTED, "UPSTREAM_CONCURRENCY_LIMIT", _upstream_quota),
    Rule(zx.ZegoRateLimited, S.UNAVAILABLE, "UPSTREAM_RATE_LIMITED", _retry_after),
    # Never UNAUTHENTICATED: that would blame the caller for our ZEGO credentials.
    Rule(zx.ZegoCredentialsRejected, S.INTERNAL, "ZEGO_CREDENTIALS_REJECTED"),
    Rule(zx.ZegoInvalidRequest, S.INTERNAL, "UPSTREAM_REQUEST_MALFORMED", None, _is_gateway_format_code),
    Rule(zx.ZegoInvalidRequest, S.INVALID_ARGUMENT, "UPSTREAM_REJECTED_INPUT"),
    Rule(zx.ZegoStateConflict, S.FAILED_PRECONDITION, "UPSTREAM_STATE_CONFLICT"),
    Rule(zx.ZegoServiceError, S.UNAVAILABLE, "UPSTREAM_ERROR", _retry_after),
    Rule(zx.ZegoApiError, S.UNAVAILABLE, "UPSTREAM_ERROR", _retry_after),
    # No valid answer from ZEGO.
    Rule(zx.ZegoDeadlineExceeded, S.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"),
    Rule(zx.ZegoTimeout, S.UNAVAILABLE, "UPSTREAM_TIMEOUT", _retry_after),
    Rule(zx.ZegoProtocolError, S.UNAVAILABLE, "UPSTREAM_PROTOCOL_ERROR", _retry_after),
    Rule(zx.ZegoTransportError, S.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", _retry_after),
)

_FALLBACK = Rule(Exception, S.INTERNAL, "INTERNAL_ERROR")

_STORE_MESSAGES: dict[grpc.StatusCode, str] = {
    S.UNAVAILABLE: "the gateway's ledger is unavailable; retry later",
    S.ABORTED: "the session changed concurrently; read it again, then retry",
    S.INTERNAL: "the ledger cannot store a value of the request; see the gateway logs for this request id",
}
"""What a caller is told of a store error, by its status code: never the error's own text."""


def _rule_for(exc: BaseException) -> Rule:
    for rule in RULES:
        if isinstance(exc, rule.exc_type) and (rule.when is None or rule.when(exc)):
            return rule
    return _FALLBACK


def _message(exc: BaseException, rule: Rule) -> str:
    if rule is _FALLBACK:
        return "internal error; see the gateway logs for this request id"
    if isinstance(exc, errors.StoreError):
        return _STORE_MESSAGES[rule.code]
    if isinstance(exc, zx.ZegoApiError):
        return f"ZEGO {exc.action} failed with code {exc.code}: {exc.message}"
    if isinstance(exc, zx.ZegoError):
        return f"ZEGO {exc.action} failed: {exc.message}"
    return str(exc)


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(
    exc: BaseException, request_id: str | None, *, deadline_spent: bool = False
) -> status_pb2.Status:
    """Map an exception to a rich status.

    Args:
        exc: what the handler raised.
        request_id: the RPC's request id, echoed in RequestInfo.
        deadline_spent: the caller's deadline is (nearly) over, so an upstream timeout is the
            caller's DEADLINE_EXCEEDED rather than a retryable UNAVAILABLE.
    """
    rule = _rule_for(exc)
    code, reason = rule.code, rule.reason or getattr(exc, "reason", "AGENTGW_ERROR")
    if deadline_spent and isinstance(exc, zx.ZegoTimeout):
        code, reason = S.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"
    metadata: dict[str, str] = {}
    if isinstance(exc, zx.ZegoError):
        metadata["zego_action"] = clip(exc.action)
    if isinstance(exc, zx.ZegoApiError):
        metadata["zego_code"] = str(exc.code)
        if exc.request_id:
            metadata["zego_request_id"] = clip(exc.request_id)
    if isinstance(exc, errors.Unavailable):
        metadata.update((clip(key, 64), clip(value)) for key, value in exc.metadata.items())
    details: list[Message] = [error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)]
    if rule.details is not None:
        details.extend(rule.details(exc))
    if code == S.UNAVAILABLE and not any(isinstance(d, error_details_pb2.RetryInfo) for d in details):
        details.append(_retry(UPSTREAM_RETRY_SECONDS))
    if request_id:
        details.append(error_details_pb2.RequestInfo(request_id=clip(request_id)))
    return status_pb2.Status(
        code=getattr(code_pb2, code.name),
        message=clip(_message(exc, rule), MAX_MESSAGE_BYTES),
        details=[_pack(d) for d in details],
    )
