"""When the client retries a failed call, and how long it waits."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import grpc

from agentgw_client.errors import AgentGwError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of retryable codes, honouring the server's RetryInfo, bounded by the call's deadline.

    A failed attempt is retried when all hold: its code is in ``retryable_codes``; the call is safe to
    repeat (idempotent, or the ErrorInfo reason is in ``safe_reasons``: the gateway says nothing was
    done); fewer than ``max_attempts`` attempts were made; and the wait ends before the call's
    deadline. The wait is the server's RetryInfo delay when it sent one, else exponential backoff
    with full jitter.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    retryable_codes: frozenset[grpc.StatusCode] = field(
        default_factory=lambda: frozenset({grpc.StatusCode.UNAVAILABLE})
    )
    safe_reasons: frozenset[str] = frozenset({"UPSTREAM_RATE_LIMITED"})
    """Reasons that mean the call had no effect (ZEGO refused it before doing anything), so even a
    non-idempotent call (``speak``, ``send_text``) may be sent again."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt, no retry."""
        return cls(max_attempts=1)

    def delay(self, error: AgentGwError, attempt: int, *, idempotent: bool) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up and raise ``error``."""
        if attempt >= self.max_attempts or error.code not in self.retryable_codes:
            return None
        if not idempotent and error.reason not in self.safe_reasons:
            return None
        suggested = error.retry_delay
        if suggested is not None:
            return max(0.0, suggested)
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return random.uniform(0.0, ceiling)
