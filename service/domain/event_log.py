"""The event log's write path and its in-process fan-out.

``EventLog.append`` stores an event (the ledger assigns its cursor; concurrent appends share one
transaction) and publishes it to the ``EventBus`` under one lock, so subscribers receive live
events in strictly increasing cursor order: a resuming subscriber can then join replay and live
with no gap and no duplicate.

``EventBus.publish`` never waits: each subscriber owns a bounded queue, and one that is full is
cut off (``overflowed``) instead of slowing ingest or the other subscribers. It resumes by cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from service import tracing
from service.domain.events import Event, EventFilter, NewEvent
from service.domain.model import SessionRecord, SessionState
from service.store.base import Ledger

__all__ = ["BusObserver", "EventBus", "EventLog", "LogObserver", "Subscription"]

log = logging.getLogger("agentgw.events")


def _traced(event: NewEvent) -> NewEvent:
    """``event`` with the current trace id, unless it has one (taken here, in the producer's context:
    the group-commit flusher runs in another task)."""
    if event.trace_id:
        return event
    trace_id = tracing.current_trace_id()  # "" while tracing is off
    return replace(event, trace_id=trace_id) if trace_id else event


APPEND_GROUP_MAX = 64
"""Most events stored in one transaction by ``EventLog.append``'s group commit."""


class BusObserver(Protocol):
    """Hooks for metrics; the bus does not import prometheus."""

    def subscriber_added(self) -> None:
        """A subscription opened."""

    def subscriber_removed(self) -> None:
        """A subscription closed."""

    def subscriber_overflow(self) -> None:
        """A subscriber fell behind and was cut off."""


class LogObserver(Protocol):
    """Hooks for metrics on what the log records."""

    def event_appended(self, event_type: str) -> None:
        """An event was stored and published."""

    def session_ended(self, kind: str, reason: str, duration_seconds: float | None = None) -> None:
        """A session reached ENDED or FAILED (every terminal transition passes through the log)."""


class _NullLogObserver:
    def event_appended(self, event_type: str) -> None:
        return None

    def session_ended(self, kind: str, reason: str, duration_seconds: float | None = None) -> None:
        return None


class _NullObserver:
    def subscriber_added(self) -> None:
        return None

    def subscriber_removed(self) -> None:
        return None

    def subscriber_overflow(self) -> None:
        return None


class Subscription:
    """One subscriber's bounded queue of live events. Use as a context manager.

    ``None`` in the queue is a heartbeat tick: the bus puts one in every idle queue each heartbeat
    interval, so an idle stream needs no timer of its own (thousands of streams, one timer).
    """

    def __init__(self, bus: EventBus, flt: EventFilter, maxsize: int) -> None:
        self.filter = flt
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.overflowed = False
        self.shutting_down = bus.shutting_down
        """Set by :meth:`EventBus.shut_down`: the consumer ends its stream (and says where to resume)."""
        self._bus = bus

    def offer(self, event: Event) -> None:
        """Queue a matching event, or mark the subscriber overflowed. Never blocks."""
        if self.overflowed or not self.filter.matches(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # The consumer finds the queue full of events, drains none of them: it checks
            # ``overflowed`` first and ends its stream.
            self.overflowed = True
            self._bus.drop(self, overflow=True)

    def tick(self) -> None:
        """Heartbeat: wake an idle consumer (a busy one is already receiving events)."""
        if self.queue.empty():
            self.queue.put_nowait(None)

    def shut_down(self) -> None:
        """Mark the subscription as ending and wake its consumer (a busy one sees the flag next)."""
        self.shutting_down = True
        self.tick()

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next live event, or None for a heartbeat tick (or after ``timeout`` seconds)."""
        if self.overflowed:
            return None
        if timeout is None:
            return await self.queue.get()
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def take_ready(self, limit: int) -> list[Event]:
        """Up to ``limit`` events already queued, oldest first, without waiting.

        Heartbeat ticks among them are dropped: a stream that is sending events is not idle. An
        overflowed subscription yields nothing (its consumer ends the stream instead).
        """
        taken: list[Event] = []
        queue = self.queue
        while len(taken) < limit and not self.overflowed and not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                taken.append(item)
        return taken

    def close(self) -> None:
        """Stop receiving events."""
        self._bus.drop(self, overflow=False)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fans logged events out to in-process subscribers."""

    def __init__(
        self, *, queue_size: int = 1000, heartbeat_seconds: float = 15.0, observer: BusObserver | None = None
    ) -> None:
        self._subscribers: set[Subscription] = set()
        self._queue_size = queue_size
        self._heartbeat = heartbeat_seconds
        self._observer: BusObserver = observer or _NullObserver()
        self._ticker: asyncio.Task[None] | None = None
        self.head = 0
        """The cursor of the newest published event."""
        self.shutting_down = False
        """Set once by :meth:`shut_down`; subscriptions opened afterwards start out shutting down."""

    async def __aenter__(self) -> EventBus:
        self._ticker = asyncio.create_task(self._tick_forever(), name="event-heartbeats")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            for sub in list(self._subscribers):
                sub.tick()

    def subscribe(self, flt: EventFilter) -> Subscription:
        """Start buffering matching live events (before reading the log, to leave no gap)."""
        sub = Subscription(self, flt, self._queue_size)
        self._subscribers.add(sub)
        self._observer.subscriber_added()
        return sub

    def drop(self, sub: Subscription, *, overflow: bool) -> None:
        """Remove a subscriber (idempotent)."""
        if sub in self._subscribers:
            self._subscribers.discard(sub)
            self._observer.subscriber_removed()
            if overflow:
                self._observer.subscriber_overflow()
                log.warning("subscriber too slow: cut off", extra={"queue_size": self._queue_size})

    def shut_down(self) -> None:
        """The process is stopping: tell every subscriber now, rather than when gRPC cancels them."""
        self.shutting_down = True
        for sub in list(self._subscribers):
            sub.shut_down()

    def publish(self, event: Event) -> None:
        """Offer ``event`` to every subscriber; callers publish in cursor order."""
        self.head = max(self.head, event.cursor)
        for sub in list(self._subscribers):
            sub.offer(event)

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)


class EventLog:
    """Durable append plus ordered publish."""

    def __init__(
        self,
        ledger: Ledger,
        bus: EventBus,
        *,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[Event], None] | None = None,
        observer: LogObserver | None = None,
        publish: bool = True,
    ) -> None:
        self._ledger = ledger
        self.bus = bus
        # False in a fleet: the shared log's tailer (service.store.pg_feed) publishes every event,
        # this replica's and the others', in cursor order; publishing here too would deliver twice.
        self._publish = publish
        self._clock = clock
        self._lock = asyncio.Lock()
        self._pending: list[tuple[NewEvent, asyncio.Future[Event | None]]] = []
        self._flusher: asyncio.Future[None] | None = None
        self.on_event = on_event
        """Called with every delivered event after it is published (e.g. the latency tracker)."""
        self._observer: LogObserver = observer or _NullLogObserver()

    async def start(self) -> None:
        """Learn the current head, so heartbeats and range checks are right before any publish."""
        _, self.bus.head = await self._ledger.event_bounds()

    def _published(self, event: Event) -> None:
        if event.hidden:
            return
        if self._publish:
            self.bus.publish(event)
        try:  # observers must never break ingest
            self._observer.event_appended(event.event_type.value)
            if self.on_event is not None:
                self.on_event(event)
        except Exception:
            log.exception("event observer failed")

    async def append(self, event: NewEvent) -> Event | None:
        """Store and publish; None when it duplicates a stored ZEGO callback.

        Appends queue up until the flusher task runs (the rest of this turn of the event loop,
        or while it waits for the log's lock) and are stored together in one transaction (a group
        commit): one BEGIN/COMMIT and one WAL write for the group instead of one each, and no added
        wait when nothing else is queued. The event is stored and published even if the caller
        stops waiting. A group whose transaction fails is retried event by event, so an error
        reaches only the caller whose event caused it.
        """
        waiter: asyncio.Future[Event | None] = asyncio.get_running_loop().create_future()
        self._pending.append((_traced(event), waiter))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await waiter

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending[:APPEND_GROUP_MAX], self._pending[APPEND_GROUP_MAX:]
            try:
                async with self._lock:
                    outcomes = await self._store([event for event, _ in group])
                    for outcome in outcomes:
                        if isinstance(outcome, Event):
                            self._published(outcome)
            except asyncio.CancelledError:  # shutdown: nobody may wait forever
                for _, waiter in group + self._pending:
                    waiter.cancel()
                self._pending = []
                raise
            for (_, waiter), outcome in zip(group, outcomes, strict=True):
                if waiter.done():
                    continue
                if isinstance(outcome, Exception):
                    waiter.set_exception(outcome)
                else:
                    waiter.set_result(outcome)

    async def _store(self, events: list[NewEvent]) -> list[Event | Exception | None]:
        try:
            return list(await self._ledger.append_events(events))
        except Exception as exc:
            if len(events) == 1:
                return [exc]
        # One bad event must not fail the others: store them one by one to find it.
        outcomes: list[Event | Exception | None] = []
        for event in events:
            try:
                outcomes.append(await self._ledger.append_event(event))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def transition_with_event(
        self,
        session_id: str,
        to_state: SessionState,
        *,
        expected: frozenset[SessionState],
        cause: str,
        event: NewEvent,
        detail: str = "",
        updates: Mapping[str, Any] | None = None,
    ) -> tuple[SessionRecord, Event]:
        """A session transition and its event, atomically, then the publish."""
        async with self._lock:
            record, stored = await self._ledger.transition_with_event(
                session_id,
                to_state,
                expected=expected,
                at=self._clock(),
                cause=cause,
                event=_traced(event),
                detail=detail,
                updates=updates,
            )
            self._published(stored)
        if record.terminal:
            try:
                self._observer.session_ended(
                    record.kind.value,
                    (record.end_reason.value if record.end_reason else "upstream_deleted"),
                    (record.ended_at - record.created_at) if record.ended_at else None,
                )
            except Exception:
                log.exception("session observer failed")
        return record, stored
