"""When a failed create may be retried under the same request_id (AIP-155), and when it must not be.

A CreateSession retried with a known request_id normally replays the original outcome. If that
outcome was a failure the caller was told to retry (UNAVAILABLE, or RESOURCE_EXHAUSTED from ZEGO's
own cap, each with RetryInfo), replaying it would make the advice useless: the retry must be a new
attempt. It is one only when it cannot double-create:

* ZEGO answered the first attempt with a retryable code (a system error, a rate limit, its
  concurrency cap): ZEGO decided "no", so no instance exists;
* the request never left the gateway (connection refused, no time budget left);
* the first attempt's answer was lost, and ZEGO has since confirmed its instance gone (the row's
  ``possible_leak`` was cleared by the leak tracker or an AgentInstanceDeleted callback).

An unconfirmed create whose instance may still run is never retried: the retry replays the FAILED
row (``possible_leak`` set), and the slot stays held until ZEGO confirms the instance gone.
"""

from __future__ import annotations

from collections.abc import Callable

from service.domain import zego_errors as zx
from service.domain.model import EndReason, SessionRecord, SessionState

__all__ = ["RETRYABLE_ZEGO_ERRORS", "never_sent", "retryable_failure"]

RETRYABLE_ZEGO_ERRORS: tuple[type[zx.ZegoApiError], ...] = (
    zx.ZegoServiceError,
    zx.ZegoRateLimited,
    zx.ZegoConcurrencyLimit,
)
"""ZEGO answers the API maps to a status with RetryInfo (``service.api.status``)."""


def never_sent(exc: zx.ZegoError) -> bool:
    """Whether a failed call provably never reached ZEGO (so ZEGO cannot have acted on it)."""
    if isinstance(exc, zx.ZegoConnectError):
        return True
    return isinstance(exc, zx.ZegoDeadlineExceeded) and not exc.sent


def retryable_failure(record: SessionRecord, error_class: Callable[[int], type[zx.ZegoApiError]]) -> bool:
    """Whether a retry of this session's create, with the same request_id, is a new attempt.

    ``error_class`` is the ZEGO port's code -> error class table (``ZegoPort.error_class``).
    """
    if record.state is not SessionState.FAILED or record.possible_leak:
        return False
    if record.end_reason is EndReason.CREATE_FAILED:
        if record.zego_code is None:
            return True  # never sent
        return issubclass(error_class(record.zego_code), RETRYABLE_ZEGO_ERRORS)
    # The answer was lost, and ZEGO has confirmed the instance gone since.
    return record.end_reason in (EndReason.CREATE_UNCONFIRMED, EndReason.REAPED_ORPHAN)
