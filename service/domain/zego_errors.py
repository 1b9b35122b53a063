"""The ZEGO error tree the domain sees: what went wrong when the domain asked ZEGO for something.

The ZEGO adapter (``service.zego``) raises these; ``service.zego.exceptions`` re-exports them and
owns the one table that maps ZEGO's codes (spec §7) to a class. The tree:

* ZegoError
  x ZegoTransportError - no valid answer was received
    - ZegoTimeout
    - ZegoConnectError
    - ZegoProtocolError
  x ZegoDeadlineExceeded - the caller's time budget ran out
  x ZegoApiError - ZEGO answered with a non-zero envelope ``Code``
    - ZegoCredentialsRejected
    - ZegoInvalidRequest
      - ZegoDigitalHumanNotFound
    - ZegoAgentAlreadyExists
    - ZegoAgentNotFound
    - ZegoInstanceNotFound
    - ZegoConcurrencyLimit
    - ZegoRateLimited
    - ZegoStateConflict
    - ZegoServiceError

Messages carry the action, code, ZEGO's ``Message`` and ``RequestId``; never a secret, a signature or a
request body.
"""

from __future__ import annotations

from typing import ClassVar, Final

__all__ = [
    "GRACEFUL_SHUTDOWN_IN_PROGRESS",
    "ZegoAgentAlreadyExists",
    "ZegoAgentNotFound",
    "ZegoApiError",
    "ZegoConcurrencyLimit",
    "ZegoConnectError",
    "ZegoCredentialsRejected",
    "ZegoDeadlineExceeded",
    "ZegoDigitalHumanNotFound",
    "ZegoError",
    "ZegoInstanceNotFound",
    "ZegoInvalidRequest",
    "ZegoProtocolError",
    "ZegoRateLimited",
    "ZegoServiceError",
    "ZegoStateConflict",
    "ZegoTimeout",
    "ZegoTransportError",
]

GRACEFUL_SHUTDOWN_IN_PROGRESS: Final = 410001041
"""ZEGO's answer (a ``ZegoStateConflict``) to any call on an instance that is finishing a graceful
delete (spec §5.10): the delete is under way, and ZEGO completes it within its timeout (<= 120 s)."""

# ZEGO's Message is free text from upstream; cap it so a runaway body can't flood logs or gRPC details.
_MAX_MESSAGE_CHARS: Final = 512


class ZegoError(Exception):
    """Base class for every error raised by the ZEGO client.

    ``action`` is the ZEGO Action being called (e.g. ``"CreateAgentInstance"``).
    """

    _outcome: ClassVar[str] = "error"

    def __init__(self, action: str, message: str) -> None:
        super().__init__(action, message)
        self.action = str(action)  # a plain str even when given the client's Action (a StrEnum)
        self.message = message[:_MAX_MESSAGE_CHARS]

    @property
    def outcome(self) -> str:
        """A short label for metrics and observers, e.g. ``"timeout"`` or the ZEGO code."""
        return self._outcome

    def __str__(self) -> str:
        return f"{self.action}: {self.message}"


class ZegoTransportError(ZegoError):
    """No valid answer was received, so whether ZEGO acted on a mutation is unknown.

    ``retryable`` says whether another attempt could plausibly succeed; the client only retries
    read-only actions, whatever this says.
    """

    def __init__(self, action: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(action, message)
        self.retryable = retryable


class ZegoTimeout(ZegoTransportError):
    """The request did not complete within the client's configured ``timeout_seconds``.

    When the caller's own deadline was the tighter bound, ``ZegoDeadlineExceeded`` is raised instead.
    """

    _outcome = "timeout"


class ZegoConnectError(ZegoTransportError):
    """A connection to ZEGO could not be established (DNS, TCP refused, TLS, proxy)."""

    _outcome = "connect_error"


class ZegoProtocolError(ZegoTransportError):
    """ZEGO's answer was unusable.

    Raised for: a non-200 HTTP status (``status_code`` set), a connection that broke while reading, a
    body that is not JSON, an envelope without an integer ``Code``, or a ``Data`` object that does not
    match the documented schema (``retryable=False``: the same answer would come back).
    """

    _outcome = "protocol_error"

    def __init__(
        self, action: str, message: str, *, status_code: int | None = None, retryable: bool = True
    ) -> None:
        super().__init__(action, message, retryable=retryable)
        self.status_code = status_code


class ZegoDeadlineExceeded(ZegoError):
    """The caller's remaining budget was spent before or while calling ZEGO.

    Raised without sending when the budget (minus a safety margin) is already gone, when waiting for
    the rate limiter would outlast it, or when an attempt timed out because the budget capped it.
    """

    _outcome = "deadline_exceeded"

    def __init__(self, action: str, message: str, *, sent: bool = True) -> None:
        super().__init__(action, message)
        self.sent = sent
        """False when the request was never sent, so ZEGO cannot have acted on it."""


class ZegoApiError(ZegoError):
    """ZEGO answered, and the envelope ``Code`` was not 0 (spec §2, §7).

    Never retried by the client: ZEGO made a decision. Use the subclasses to branch; ``code`` is the raw
    9-digit ZEGO code and ``request_id`` is ZEGO's ``RequestId`` for support tickets.
    """

    def __init__(self, code: int, message: str, request_id: str, action: str) -> None:
        super().__init__(action, message)
        self.code = code
        self.request_id = request_id
        # Match the constructor so the exception pickles and reprs faithfully.
        self.args = (code, self.message, request_id, self.action)

    @property
    def outcome(self) -> str:
        """The ZEGO code as a string, the label observers record for this outcome."""
        return str(self.code)

    def __str__(self) -> str:
        return f"{self.action}: code {self.code}: {self.message} (request_id={self.request_id or '-'})"


class ZegoCredentialsRejected(ZegoApiError):
    """ZEGO rejected *our* account: signature expired/wrong, unknown AppId, app config missing, service
    not enabled, or a trial account expired. This is a gateway misconfiguration, never the caller's fault.
    """


class ZegoInvalidRequest(ZegoApiError):
    """ZEGO rejected the request's shape or values: bad parameter (410000003, the Message names it), body
    not JSON, malformed common query parameters, or invalid digital-human settings.
    """


class ZegoDigitalHumanNotFound(ZegoInvalidRequest):
    """ZEGO does not know the DigitalHumanId, or this app may not use it: 410001027 (incorrect) and
    410001048 (not owned by this app) from the AI Agent API, 400000003 from the Digital Human API.
    """


class ZegoAgentAlreadyExists(ZegoApiError):
    """RegisterAgent with an AgentId that is already registered (410001008)."""


class ZegoAgentNotFound(ZegoApiError):
    """The AgentId is not registered (410001009)."""


class ZegoInstanceNotFound(ZegoApiError):
    """The AgentInstanceId does not exist or was already deleted (410001002)."""


class ZegoConcurrencyLimit(ZegoApiError):
    """The app's concurrent-instance quota is used up (410000011 voice, 410001031 digital human) or
    digital-human resources are insufficient (410001025, which ZEGO's sample treats as the same limit).
    """


class ZegoRateLimited(ZegoApiError):
    """ZEGO throttled the call: 410001029 (digital-human APIs) or a code configured as a rate limit,
    since ZEGO does not document the code for its generic 10 requests/s limit.
    """


class ZegoStateConflict(ZegoApiError):
    """The instance is in a state that forbids the call: listening in walkie-talkie mode, shutting down,
    not in walkie-talkie mode, stale Sequence, user not publishing or not in the room, stream ID clash,
    or a live digital human that refuses API control.
    """


class ZegoServiceError(ZegoApiError):
    """Any other non-zero code: ZEGO-side failures (410000001 system error, 100000015 gateway error,
    410001003 create failed ...) and codes this table does not know yet.
    """
