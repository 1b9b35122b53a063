"""Internal events of the emulated instances: the seam through which server callbacks leave.

The state model calls :meth:`EventSink.emit` with the callback ``Event`` name, its ``Data`` exactly as spec
§8.3 defines it (``AgentInstanceCreated`` with ``CreatedTimestamp``, ``AgentInstanceDeleted`` with
``Code``/``DeletedTimestamp``/``LatencyData``, ``AgentInstanceStatus``, ``Interrupted``, ``LLMResult``...) and
the emulated Unix ms at which the step happened (see :mod:`.timeline`), in order per instance.

:class:`~.callbacks.CallbackDeliverer` is the sink that POSTs them to a callback URL. In ``emit`` it reads the
envelope facts (AgentUserId, RoomId, AgentId, Name, CallbackConfig) synchronously from
``EmulatorState.describe(instance_id)``, which is valid for every event because ``AgentInstanceDeleted`` is
emitted before the instance is removed; then it queues the signed POST. ``emit`` must never block.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

__all__ = ["EventSink", "FanOutSink", "RecordedEvent", "RecordingEventSink"]

RecordedEvent = dict[str, Any]
"""``{"seq", "timestamp_ms", "instance_id", "event", "data"}``."""


class EventSink(Protocol):
    """Receives every internal event of the emulator. Must not block or raise."""

    def emit(self, instance_id: str, event: str, data: dict[str, Any], timestamp_ms: int) -> None:
        """Called synchronously, in order, from the emulator's event loop; ``timestamp_ms`` is emulated."""


class FanOutSink:
    """Passes each event to several sinks, in order."""

    def __init__(self, *sinks: EventSink | None) -> None:
        self._sinks = [s for s in sinks if s is not None]

    def emit(self, instance_id: str, event: str, data: dict[str, Any], timestamp_ms: int) -> None:
        """Forward one event to every sink."""
        for sink in self._sinks:
            sink.emit(instance_id, event, data, timestamp_ms)


class RecordingEventSink:
    """The default sink: keeps the most recent events in a bounded list (shown by ``GET /_emulator/events``).

    ``forward`` is an optional second sink (e.g. the callback deliverer) that also receives each event.
    """

    def __init__(self, max_events: int = 1000, forward: EventSink | None = None) -> None:
        self._events: deque[RecordedEvent] = deque(maxlen=max_events)
        self._seq = 0
        self._forward = forward

    def emit(self, instance_id: str, event: str, data: dict[str, Any], timestamp_ms: int) -> None:
        """Record one event (the oldest is dropped when full)."""
        self._seq += 1
        self._events.append(
            {
                "seq": self._seq,
                "timestamp_ms": timestamp_ms,
                "instance_id": instance_id,
                "event": event,
                "data": dict(data),
            }
        )
        if self._forward is not None:
            self._forward.emit(instance_id, event, data, timestamp_ms)

    def events(self, instance_id: str | None = None) -> list[RecordedEvent]:
        """The recorded events, oldest first, optionally for one instance."""
        return [e for e in self._events if instance_id is None or e["instance_id"] == instance_id]

    def clear(self) -> None:
        """Forget every recorded event."""
        self._events.clear()
