"""Injected callback faults (admin ``/_emulator/callback-faults``): lose, repeat, reorder, delay or mis-sign.

Each fault applies to the next ``count`` callbacks (of ``event``, if given) that would otherwise be delivered,
first-in first-out, exactly like the API faults in :mod:`.faults`:

* ``drop``: never sent, recorded as dropped, as if every retry had failed;
* ``duplicate``: sent twice with the same body (same Nonce, Signature and Sequence);
* ``reorder``: swapped with the next callback of the same instance (which is sent first), breaking the
  per-instance order on purpose; if no next one arrives within a second, it is sent alone;
* ``delay``: held ``delay_ms`` real milliseconds before it is sent (later ones of its instance wait too);
* ``bad_signature``: sent with a corrupted Signature (on every attempt).

``delay_ms`` may be combined with any mode; it is real time, not scaled, like the API faults' latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .faults import FaultError, FaultQueue, bounded_int

__all__ = ["CALLBACK_EVENTS", "CallbackFault", "CallbackFaultError", "CallbackFaults"]

CALLBACK_EVENTS = (
    "ASRResult",
    "LLMResult",
    "Exception",
    "Interrupted",
    "UserSpeakAction",
    "AgentInstanceStatus",
    "UserAudioData",
    "AgentInstanceCreated",
    "AgentInstanceDeleted",
    "AgentInstanceMetaInfo",
)
"""Every callback Event the emulator sends (spec §8.3, without the deprecated AgentSpeakAction)."""

MODES = ("drop", "duplicate", "reorder", "delay", "bad_signature")
MAX_DELAY_MS = 60_000


@dataclass
class CallbackFault:
    """One injected callback fault, consumed by the next ``count`` matching callbacks."""

    mode: str
    count: int
    delay_ms: int = 0
    event: str | None = None

    def matches(self, event: str) -> bool:
        """Whether the fault applies to a callback of ``event``."""
        return self.event in (None, event)

    def to_json(self) -> dict[str, Any]:
        """The admin representation."""
        return {"mode": self.mode, "count": self.count, "delay_ms": self.delay_ms, "event": self.event}


class CallbackFaultError(FaultError):
    """Admin input describing an impossible callback fault (answered with HTTP 400)."""


def _int(payload: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    try:
        value = bounded_int(payload, key, default, lo, hi)
    except FaultError as exc:
        raise CallbackFaultError(str(exc)) from None
    assert value is not None
    return value


class CallbackFaults(FaultQueue[CallbackFault]):
    """Active callback faults, applied first-in first-out (the same queue as the API faults)."""

    def add(self, payload: Any) -> CallbackFault:
        """Validate admin JSON, e.g. ``{"mode": "drop", "count": 2, "event": "LLMResult"}``."""
        if not isinstance(payload, dict):
            raise CallbackFaultError("the body must be a JSON object")
        unknown = set(payload) - {"mode", "count", "delay_ms", "event"}
        if unknown:
            raise CallbackFaultError(f"unknown keys: {', '.join(sorted(unknown))}")
        mode = payload.get("mode")
        if mode not in MODES:
            raise CallbackFaultError(f"mode must be one of {', '.join(MODES)}")
        event = payload.get("event")
        if event is not None and event not in CALLBACK_EVENTS:
            raise CallbackFaultError(f"event must be one of {', '.join(CALLBACK_EVENTS)}")
        count = _int(payload, "count", 1, 1, 1_000_000)
        delay_ms = _int(payload, "delay_ms", 0, 0, MAX_DELAY_MS)
        if mode == "delay" and not delay_ms:
            raise CallbackFaultError("mode delay needs a positive delay_ms")
        return self.push(CallbackFault(mode=mode, count=count, delay_ms=delay_ms, event=event))
