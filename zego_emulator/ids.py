"""Identifier generators shaped like ZEGO's: 19-digit snowflake strings, sparse increasing Rounds and
callback Sequences."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

__all__ = ["CallbackSequences", "RoundAllocator", "SnowflakeIds"]

# Twitter's snowflake epoch: with a 22-bit shift it yields 19-digit ids for dates between about 2019
# and 2080, which matches ZEGO's examples ("1912122918452641792").
_EPOCH_MS = 1288834974657
_LOW, _HIGH = 10**18, 10**19


class SnowflakeIds:
    """Unique, roughly time-ordered 19-digit decimal ids (AgentInstanceId, RequestId)."""

    def __init__(self, worker: int = 1, clock_ms: Callable[[], int] | None = None) -> None:
        self._worker = worker & 0x3FF
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._last = 0

    def next(self) -> str:
        """A fresh id, strictly greater than the previous one."""
        candidate = ((self._clock_ms() - _EPOCH_MS) << 22) | (self._worker << 12)
        # Same millisecond (or a clock step back): keep increasing by bumping the sequence bits.
        value = max(candidate, self._last + 1)
        if not _LOW <= value < _HIGH:
            # Only reachable with a wildly wrong clock; stay in the documented 19-digit shape.
            value = max(self._last + 1, _LOW)
        self._last = value
        return str(value)


class RoundAllocator:
    """Per-AppId Rounds: int64, strictly increasing, never repeating and deliberately not contiguous.

    Starts near ZEGO's example ``158422001`` and advances by a random 1..999 step, so a client that assumes
    ``round + 1`` is the next round fails in tests as it would against ZEGO (spec §3, A/ROUND).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._last = 158422001 + self._rng.randint(0, 999)

    def next(self) -> int:
        """Allocate the next Round."""
        self._last += self._rng.randint(1, 999)
        return self._last


class CallbackSequences:
    """Callback ``Sequence`` values: int64, strictly increasing, deliberately not contiguous (spec §8.1).

    One allocator serves the whole AppId, so Sequences also increase per instance. They start near a value
    seen from ZEGO (1921825797275873300), far beyond 2**53: a consumer that parses JSON numbers as doubles
    loses the low digits and fails in tests as it would against ZEGO.
    """

    START = 1921825797275873300

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._last = self.START + self._rng.randint(0, 999_999)

    def next(self) -> int:
        """Allocate the next Sequence (a random gap of 1..1000)."""
        self._last += self._rng.randint(1, 1000)
        return self._last
