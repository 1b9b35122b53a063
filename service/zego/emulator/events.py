"""Internal events of the emulated instances: the seam for server-callback delivery.

The state model calls :meth:`EventSink.emit` with the callback ``Event`` name and its ``Data`` exactly as
spec §8.3 defines them (``AgentInstanceCreated`` with ``CreatedTimestamp``, ``AgentInstanceDeleted`` with
``Code``/``DeletedTimestamp``, ``AgentInstanceStatus``, ``Interrupted``, ``LLMResult``...).

Callback delivery over HTTP is a later issue. A deliverer will implement :class:`EventSink`: in ``emit`` it
reads the envelope fields (AgentUserId, RoomId, AgentId, Name, CallbackConfig) synchronously from
``EmulatorState.describe(instance_id)``, which is valid for every event, because ``AgentInstanceDeleted`` is
emitted before the instance is removed. It then queues the signed POST; ``emit`` must never block.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

__all__ = ["EventSink", "RecordedEvent", "RecordingEventSink"]

RecordedEvent = dict[str, Any]
"""``{"seq", "timestamp_ms", "instance_id", "event", "data"}``."""


class EventSink(Protocol):
    """Receives every internal event of the emulator. Must not block or raise."""

    def emit(self, instance_id: str, event: str, data: dict[str, Any]) -> None:
        """Called synchronously, in order, from the emulator's event loop."""


class RecordingEventSink:
    """The default sink: keeps the most recent events in a bounded list (shown by ``GET /_emulator/events``).

    ``forward`` is an optional second sink (e.g. a future callback deliverer) that also receives each event.
    """

    def __init__(self, max_events: int = 1000, forward: EventSink | None = None) -> None:
        self._events: deque[RecordedEvent] = deque(maxlen=max_events)
        self._seq = 0
        self._forward = forward

    def emit(self, instance_id: str, event: str, data: dict[str, Any]) -> None:
        """Record one event (the oldest is dropped when full)."""
        self._seq += 1
        self._events.append(
            {
                "seq": self._seq,
                "timestamp_ms": int(time.time() * 1000),
                "instance_id": instance_id,
                "event": event,
                "data": dict(data),
            }
        )
        if self._forward is not None:
            self._forward.emit(instance_id, event, data)

    def events(self, instance_id: str | None = None) -> list[RecordedEvent]:
        """The recorded events, oldest first, optionally for one instance."""
        return [e for e in self._events if instance_id is None or e["instance_id"] == instance_id]

    def clear(self) -> None:
        """Forget every recorded event."""
        self._events.clear()
