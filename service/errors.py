"""Errors the domain raises. The API layer maps them (and the ZEGO client's) to gRPC statuses.

Our exception hierarchy::

    AgentGwError
      x InvalidArgument       - the caller's input breaks a rule; carries field violations
        - RequestIdReused     - a request_id came back with a different body
      x NotFound              - the addressed agent or session does not exist
      x FailedPrecondition    - the resource is in a state that forbids the call
      x CapacityExhausted     - admission control: no slot free in the pool
      x SubscriberTooSlow     - an event subscriber fell behind its buffer and was cut off
      x OutOfRange            - a position (cursor) beyond what exists
      x Unavailable           - the gateway cannot serve right now (shutting down)
      x StoreError            - the ledger failed (I/O, locked or lost database, unreadable row)
        - UnstorableValue     - a value the ledger cannot hold: the input is at fault
        - DuplicateEvent      - the event is already stored; nothing was changed
        - TransitionConflict  - the session was not in an expected state

The domain never imports gRPC: these carry plain data, and ``service.api.status`` is the one
table that turns them into ``google.rpc.Status``.

The store errors are part of the tree in the way httpx maps its transport's errors: a ledger
adapter (``service.store``) translates its driver's exceptions (``sqlite3.OperationalError``, a lost
connection...) into :class:`StoreError` at its boundary, keeping the original as ``__cause__``, so
the domain and the API never see a driver's types. The ports (``service.domain.ports``) re-export
them. A store error's message may name a file or quote the driver: the status table never shows it
to a caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.domain.model import SessionRecord

__all__ = [
    "AgentGwError",
    "CapacityExhausted",
    "DuplicateEvent",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "QuotaExhausted",
    "RequestIdReused",
    "StoreError",
    "SubscriberTooSlow",
    "TransitionConflict",
    "Unauthenticated",
    "Unavailable",
    "UnstorableValue",
]


class AgentGwError(Exception):
    """Root of every error the gateway's own logic raises. ``reason`` is the ErrorInfo reason."""

    reason: str = "AGENTGW_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FieldViolation:
    """One broken rule: ``field`` is the request's field path, e.g. ``agent.llm.url``."""

    field: str
    description: str


class InvalidArgument(AgentGwError):
    """Raised before any upstream call when the request breaks a rule."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        if not violations:
            raise ValueError("InvalidArgument needs at least one violation")
        first = violations[0]
        super().__init__(message or f"{first.field}: {first.description}")
        self.violations = violations


class RequestIdReused(InvalidArgument):
    """A request_id was retried with a different body (AIP-155: never silently pick one)."""

    reason = "REQUEST_ID_REUSED"

    def __init__(self, request_id: str) -> None:
        super().__init__(
            [FieldViolation("request_id", "was already used with a different request body")],
            "request_id was already used with a different request body",
        )
        self.request_id = request_id


class NotFound(AgentGwError):
    """The addressed resource does not exist (or no longer exists)."""

    def __init__(self, resource_type: str, resource_name: str, reason: str) -> None:
        super().__init__(f"{resource_type} {resource_name!r} not found")
        self.resource_type = resource_type
        self.resource_name = resource_name
        self.reason = reason


class FailedPrecondition(AgentGwError):
    """The resource's state forbids the call; retrying will not help until it changes."""

    def __init__(self, reason: str, subject: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.subject = subject


class CapacityExhausted(AgentGwError):
    """Admission control: every slot of the pool is taken."""

    reason = "CAPACITY_EXHAUSTED"

    def __init__(self, pool: str, limit: int, in_use: int, retry_after_seconds: float) -> None:
        super().__init__(f"all {limit} {pool} slots are in use")
        self.pool = pool
        self.limit = limit
        self.in_use = in_use
        self.retry_after_seconds = retry_after_seconds


class QuotaExhausted(CapacityExhausted):
    """The caller's own quota of the pool is used up (the pool itself may have room)."""

    reason = "QUOTA_EXHAUSTED"

    def __init__(self, caller: str, pool: str, quota: int, in_use: int, retry_after_seconds: float) -> None:
        super().__init__(pool, quota, in_use, retry_after_seconds)
        self.message = f"{caller} holds {in_use} of its quota of {quota} {pool} sessions"
        self.args = (self.message,)
        self.caller = caller


class SubscriberTooSlow(AgentGwError):
    """The subscriber's buffer overflowed; it should resume from its last cursor."""

    reason = "SUBSCRIBER_TOO_SLOW"


class OutOfRange(AgentGwError):
    """A position beyond the end, e.g. a cursor ahead of the event log's head."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Unavailable(AgentGwError):
    """The gateway cannot serve right now (it is shutting down); retry later, maybe elsewhere.

    ``metadata`` goes into the status's ErrorInfo, e.g. the cursor a stream can resume after.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        retry_after_seconds: float = 1.0,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds
        self.metadata: Mapping[str, str] = metadata or {}


class Unauthenticated(AgentGwError):
    """Missing or bad credentials: ``UNAUTHENTICATED`` with an ``ErrorInfo`` reason.

    ``reason`` is ``CREDENTIALS_MISSING``, ``TOKEN_EXPIRED`` or ``TOKEN_INVALID``. The message
    says what to send in general terms only: it never names a key id, an issuer or a claim value
    the gateway expected, nor whether the identity exists.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PermissionDenied(AgentGwError):
    """The caller is known and may see the resource, but its role may not change it
    (a ``viewer`` ending a session). Never used where it would confirm that something exists."""

    def __init__(self, message: str, *, reason: str = "PERMISSION_DENIED") -> None:
        super().__init__(message)
        self.reason = reason


class StoreError(AgentGwError):
    """The ledger could not complete an operation: an I/O error, a locked, lost or corrupt
    database, a row it cannot read back. Transient as far as the caller knows: ``UNAVAILABLE``
    with a ``RetryInfo`` (reason ``LEDGER_UNAVAILABLE``), the details only in the gateway's log."""

    reason = "LEDGER_UNAVAILABLE"


class StoreUnavailable(StoreError):
    """The store's server cannot be reached right now (connection lost or refused, a restart or a
    failover, a statement or pool timeout): retry later, in ``retry_after_seconds``."""

    def __init__(self, message: str, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class UnstorableValue(StoreError):
    """A value the store cannot hold (an integer beyond 64 bits, text that is not Unicode, JSON that
    fails a CHECK): the input is at fault, so retrying it cannot help."""

    reason = "LEDGER_UNSTORABLE_VALUE"


class DuplicateEvent(StoreError):
    """The event (same instance and ZEGO Sequence) is already stored; nothing was changed."""

    reason = "CONCURRENT_MODIFICATION"


class TransitionConflict(StoreError):
    """The session was not in one of the expected states; ``current`` is what it is now."""

    reason = "CONCURRENT_MODIFICATION"

    def __init__(self, current: SessionRecord | None) -> None:
        super().__init__("session is not in an expected state")
        self.current = current
