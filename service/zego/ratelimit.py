"""A per-action asyncio token bucket that keeps us under ZEGO's documented limit (spec §1.2).

ZEGO allows 10 requests/s per action by default and does not document the code it answers with once the
limit is hit, so we pace ourselves instead of finding out. The bucket is per process: with several
gateway replicas sharing one AppId, divide the rate between them.

Fairness: each caller *reserves* a token under a lock, in arrival order, and then sleeps until its
reserved time outside the lock. A later caller can therefore never overtake an earlier one, and a slow
sleeper does not hold up the callers behind it from computing their own slots.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import monotonic

__all__ = ["FairRateLimiter", "RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float  # may go negative: each negative unit is a reservation some caller is sleeping on
    updated: float
    lock: asyncio.Lock


class RateLimiter:
    """Token buckets keyed by action name.

    Args:
        rate_per_second: sustained requests per second per action (ZEGO default: 10).
        burst: bucket size, i.e. requests allowed back to back after an idle period. Defaults to
            ``max(1, rate_per_second)``.
        clock: monotonic seconds; injectable for tests.
        sleep: the coroutine used to wait; injectable for tests.
    """

    def __init__(
        self,
        rate_per_second: float = 10.0,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not (rate_per_second > 0 and math.isfinite(rate_per_second)):
            raise ValueError(f"rate_per_second must be a positive number, got {rate_per_second!r}")
        size = max(1.0, rate_per_second) if burst is None else burst
        if not (size >= 1 and math.isfinite(size)):
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate = rate_per_second
        self.burst = size
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, action: str) -> _Bucket:
        bucket = self._buckets.get(action)
        if bucket is None:
            bucket = self._buckets[action] = _Bucket(self.burst, self._clock(), asyncio.Lock())
        return bucket

    async def acquire(self, action: str, *, max_wait: float | None = None) -> float:
        """Take one token for ``action``, sleeping until one is available.

        Returns the seconds actually waited (0.0 when a token was free).

        Raises:
            TimeoutError: the wait would exceed ``max_wait``; no token is taken, nothing is slept.
        """
        bucket = self._bucket(action)
        async with bucket.lock:
            now = self._clock()
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            wait = max(0.0, (1.0 - bucket.tokens) / self.rate)
            if max_wait is not None and wait > max_wait:
                raise TimeoutError(f"rate limit for {action} needs {wait:.3f}s, budget is {max_wait:.3f}s")
            bucket.tokens -= 1.0
        if wait <= 0.0:
            return 0.0
        try:
            await self._sleep(wait)
        except BaseException:
            # Cancelled while queued: hand the reservation back so the slot isn't wasted.
            bucket.tokens = min(self.burst, bucket.tokens + 1.0)
            raise
        return self._clock() - now


class FairRateLimiter:
    """Per-action buckets, plus a bucket per (action, caller) holding each caller to a share of the
    action's rate, so one caller bursting cannot take all of ZEGO's 10 requests/s from the others.

    ``caller()`` names whoever is calling right now and ``share(name)`` is its fraction (0, 1] of
    the rate, or None for no share limit. A call waits for its caller's bucket first and then for
    the action's, so the action's own limit still holds over all callers together.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: float | None = None,
        *,
        caller: Callable[[], str],
        share: Callable[[str], float | None],
        clock: Callable[[], float] = monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._action = RateLimiter(rate_per_second, burst, clock=clock, sleep=sleep)
        self._callers: dict[float, RateLimiter] = {}
        self._caller = caller
        self._share = share
        self._clock = clock
        self._sleep = sleep
        self.rate = rate_per_second

    def _caller_limiter(self, share: float) -> RateLimiter:
        limiter = self._callers.get(share)
        if limiter is None:
            rate = self.rate * share
            limiter = self._callers[share] = RateLimiter(
                rate, max(1.0, rate), clock=self._clock, sleep=self._sleep
            )
        return limiter

    async def acquire(self, action: str, *, max_wait: float | None = None) -> float:
        """Take a token from the caller's bucket, then from the action's; the seconds waited."""
        name = self._caller()
        share = self._share(name)
        waited = 0.0
        if share is not None and share < 1.0:
            started = self._clock()
            waited = await self._caller_limiter(share).acquire(f"{action}\x00{name}", max_wait=max_wait)
            if max_wait is not None:
                max_wait = max(0.0, max_wait - (self._clock() - started))
        return waited + await self._action.acquire(action, max_wait=max_wait)
