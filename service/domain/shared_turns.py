"""Per-turn latency when one session's callbacks and RPCs arrive at different replicas.

The design: every replica runs a ``LatencyTracker`` fed by its tailer with *every* event of the
shared log, in cursor order, so every replica holds the same turn state; only the replica holding
the lease records (metrics, the ``turns`` rows, ``latency_budget_exceeded`` events), so each turn
is counted once across the fleet, and a replica that takes the lease over already knows the turns
in progress. The one input that is not a callback, the arrival of a SendText/Speak RPC, is made a
log entry too: :class:`SharedTurnStarts` appends it as a *hidden* event (stored, never delivered to
subscribers), and :func:`tracker_feed` turns it back into ``api_turn`` on every replica.

Why not tracker state in the ledger: a turn's marks would then be a read-modify-write per callback,
across replicas, on the ingest path; replaying the log costs each replica one in-memory pass instead.
The edge this leaves: a turn completing while the lease changes hands can be recorded by both
holders or by neither (bounded by the lease's check interval); and a replica started mid-turn does
not know that turn (it starts from the log's head).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from service.domain.event_log import EventLog
from service.domain.events import Event, EventType, NewEvent
from service.domain.latency import LatencyObserver, LatencyTracker
from service.domain.model import SessionRecord
from service.store.base import Ledger

__all__ = [
    "TURN_STARTED",
    "FleetLatencyTracker",
    "SharedTurnStarts",
    "tracker_feed",
    "turn_start_of",
    "turn_started_event",
]

log = logging.getLogger("agentgw.latency")

TURN_STARTED = "TURN_STARTED"
"""The ``status`` of the hidden AGENT_STATUS event that records an RPC-side turn start."""


class _Sessions(Protocol):
    async def get_session(self, session_id: str) -> SessionRecord | None:
        """One session by id."""


class _Appender(Protocol):
    async def append(self, event: NewEvent) -> Event | None:
        """Store an event (the log)."""


def turn_started_event(record: SessionRecord, trigger: str, round_: int, started_at: float) -> NewEvent:
    """The hidden event recording that ``trigger`` (send_text, speak) started turn ``round_``."""
    return NewEvent(
        event_type=EventType.AGENT_STATUS,
        session_id=record.session_id,
        instance_id=record.instance_id,
        agent_id=record.agent_id,
        room_id=record.room_id,
        event_time_ms=int(started_at * 1000),
        received_at=started_at,
        sequence=None,
        round=round_,
        data={"status": TURN_STARTED, "trigger": trigger, "started_at": started_at},
        labels=record.labels,
        agent_user_id=record.agent_user_id,
        hidden=True,
        owner=record.owner,
    )


def turn_start_of(event: Event) -> tuple[str, str, int, float] | None:
    """``(session_id, trigger, round, started_at)`` of a turn-start event; None for any other."""
    data = event.data
    if not (
        event.hidden and event.event_type is EventType.AGENT_STATUS and data.get("status") == TURN_STARTED
    ):
        return None
    trigger, started_at = data.get("trigger"), data.get("started_at")
    if event.session_id is None or event.round is None or not isinstance(trigger, str):
        return None
    if not isinstance(started_at, int | float) or isinstance(started_at, bool):
        return None
    return event.session_id, trigger, event.round, float(started_at)


def tracker_feed(
    on_event: Callable[[Event], None], turn_started: Callable[[str, str, int, float], None]
) -> Callable[[Event], None]:
    """The tailer observer of a fleet's tracker: delivered events to ``on_event``, logged turn
    starts to ``turn_started`` (the tracker's own ``api_turn``), other hidden events (duplicates
    kept for audit) nowhere."""

    def feed(event: Event) -> None:
        if not event.hidden:
            on_event(event)
            return
        start = turn_start_of(event)
        if start is not None:
            turn_started(*start)

    return feed


class SharedTurnStarts:
    """``api_turn`` for a fleet: logs the turn start instead of telling the local tracker alone.

    The RPC is never slowed by it: the append runs in a task (the SPEAKING callback may well come
    first; the tracker remembers an early SPEAKING for a while).
    """

    def __init__(self, sessions: _Sessions, events: _Appender) -> None:
        self._sessions = sessions
        self._events = events
        self._tasks: set[asyncio.Task[None]] = set()

    def api_turn(self, session_id: str, trigger: str, round_: int, started_at: float) -> None:
        """SendText or Speak returned ``round_``; the RPC arrived at ``started_at`` (seconds)."""
        task = asyncio.get_running_loop().create_task(self._log(session_id, trigger, round_, started_at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _log(self, session_id: str, trigger: str, round_: int, started_at: float) -> None:
        try:
            record = await self._sessions.get_session(session_id)
            if record is not None:
                await self._events.append(turn_started_event(record, trigger, round_, started_at))
        except Exception:
            log.exception("could not log a turn start; that turn goes unmeasured")

    async def drain(self) -> None:
        """Wait for the turn starts being logged (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class FleetLatencyTracker(LatencyTracker):
    """The tracker of a fleet replica: ``api_turn`` logs the turn start (every replica's tracker
    learns it from its tailer, through :attr:`feed`), and only while ``recording()`` (the lease is
    held) are turns recorded."""

    def __init__(
        self,
        ledger: Ledger,
        events: EventLog,
        observer: LatencyObserver,
        *,
        budget_seconds: float = 1.5,
        recording: Callable[[], bool],
    ) -> None:
        super().__init__(ledger, events, observer, budget_seconds=budget_seconds, recording=recording)
        self._starts = SharedTurnStarts(ledger, events)
        self.feed = tracker_feed(self.on_event, super().api_turn)
        """The tailer observer feeding this tracker."""

    def api_turn(self, session_id: str, trigger: str, round_: int, started_at: float) -> None:
        """SendText or Speak returned ``round_``: log it for every replica (this one included)."""
        self._starts.api_turn(session_id, trigger, round_, started_at)

    async def drain(self) -> None:
        """Wait for the turn starts being logged, then for the queued events."""
        await self._starts.drain()
        await super().drain()
