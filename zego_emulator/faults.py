"""Injected faults (admin API) and the per-action token bucket (ZEGO's 10 requests/second per action)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Fault", "FaultError", "FaultQueue", "FaultTable", "TokenBuckets", "bounded_int"]

ANY_ACTION = "*"
MODES = ("timeout", "drop")
MAX_LATENCY_MS = 60_000


@dataclass
class Fault:
    """One injected fault, consumed by the next ``count`` calls of ``action`` (``"*"``: any action).

    ``latency_ms`` is added before anything else; then ``code`` is answered, or ``mode`` applies: ``timeout``
    never answers in time, ``drop`` closes the connection without an HTTP response.
    """

    action: str
    count: int
    code: int | None = None
    latency_ms: int = 0
    mode: str | None = None

    def matches(self, action: str) -> bool:
        """Whether the fault applies to a call of ``action``."""
        return self.action in (action, ANY_ACTION)

    def to_json(self) -> dict[str, Any]:
        """The admin representation."""
        return {
            "action": self.action,
            "count": self.count,
            "code": self.code,
            "latency_ms": self.latency_ms,
            "mode": self.mode,
        }


class FaultError(ValueError):
    """Admin input describing an impossible fault (answered with HTTP 400)."""


def bounded_int(payload: dict[str, Any], key: str, default: int | None, lo: int, hi: int) -> int | None:
    """An optional integer admin field within [lo, hi]; FaultError names the key otherwise."""
    value = payload.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FaultError(f"{key} must be an integer between {lo} and {hi}")
    return value


_int = bounded_int


class _Countable(Protocol):
    count: int

    def matches(self, key: str) -> bool: ...

    def to_json(self) -> dict[str, Any]: ...


F = TypeVar("F", bound=_Countable)


class FaultQueue(Generic[F]):
    """Faults applied first-in first-out, each to the next ``count`` matching uses."""

    def __init__(self) -> None:
        self._faults: deque[F] = deque()

    def push(self, fault: F) -> F:
        """Activate a validated fault."""
        self._faults.append(fault)
        return fault

    def take(self, key: str) -> F | None:
        """Consume one use of the first fault matching ``key``, if any."""
        for fault in self._faults:
            if fault.matches(key):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def active(self) -> list[dict[str, Any]]:
        """Active faults, for the admin API."""
        return [f.to_json() for f in self._faults]

    def clear(self) -> int:
        """Remove every fault; returns how many there were."""
        cleared = len(self._faults)
        self._faults.clear()
        return cleared


class FaultTable(FaultQueue[Fault]):
    """API faults per action, applied first-in first-out."""

    def __init__(self, actions: Collection[str]) -> None:
        super().__init__()
        self._actions = frozenset(actions)

    def add(self, payload: Any) -> Fault:
        """Validate admin JSON, e.g. ``{"action": "CreateAgentInstance", "code": 410000001, "count": 2}``."""
        if not isinstance(payload, dict):
            raise FaultError("the body must be a JSON object")
        unknown = set(payload) - {"action", "count", "code", "latency_ms", "mode"}
        if unknown:
            raise FaultError(f"unknown keys: {', '.join(sorted(unknown))}")
        action = payload.get("action")
        if action != ANY_ACTION and action not in self._actions:
            raise FaultError('action must be one of the 19 ZEGO action names or "*"')
        count = _int(payload, "count", 1, 1, 1_000_000)
        code = _int(payload, "code", None, 1, 2**31 - 1)
        latency = _int(payload, "latency_ms", 0, 0, MAX_LATENCY_MS)
        mode = payload.get("mode")
        if mode is not None and mode not in MODES:
            raise FaultError(f"mode must be one of {', '.join(MODES)}")
        if code is not None and mode is not None:
            raise FaultError("give either code or mode, not both")
        if code is None and mode is None and not latency:
            raise FaultError("give a code, a latency_ms or a mode")
        assert count is not None and latency is not None
        return self.push(Fault(action=action, count=count, code=code, latency_ms=latency, mode=mode))


class TokenBuckets:
    """One token bucket per action: ``rate`` tokens per second, bursting up to ``rate`` (at least 1)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, action: str) -> bool:
        """Take one token for ``action``; False when the bucket is empty."""
        now = self._clock()
        tokens, last = self._buckets.get(action, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[action] = (tokens, now)
            return False
        self._buckets[action] = (tokens - 1.0, now)
        return True

    def clear(self) -> None:
        """Refill every bucket."""
        self._buckets.clear()
