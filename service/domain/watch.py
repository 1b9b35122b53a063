"""Watching the event log: replay from a cursor, then live events, with no gap and no duplicate.

The join works like this: the subscription to the :class:`~service.domain.ports.LiveFeed` is
opened *before* the log is read, so every event committed after that moment is in its queue; the
replay reads the log (the :class:`~service.domain.ports.Ledger`) up to its end; then live events
are taken from the queue, skipping any cursor the replay already sent. The feed publishes in cursor
order (in one process ``EventLog`` publishes under the lock it appends with; in a fleet a tailer
reads the shared log in cursor order), so this join holds whichever feeds it.

A watch on given session ids is NOT_FOUND if one of them does not exist (or is not the caller's),
and completes once every one of them has ended (after their ``ended`` events). An idle stream gets
a heartbeat with the cursor it has caught up to at each tick of the feed. A subscriber that falls
behind its queue is cut off (``SubscriberTooSlow``) and resumes by cursor. When the feed shuts down
every stream ends at once with ``Unavailable`` carrying the cursor to resume after.

With a batch size >= 2 the same events go out in batches: a replay page is cut into batches, and a
live batch is the event that woke the stream plus whatever is already queued behind it. Nothing
ever waits to fill a batch.

The watch knows no wire format: it yields what a :class:`Renderer` makes of events, batches and
heartbeats (the API layer renders protobuf), so a stream passes through one generator only.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from service.domain.access import owner_scope, session_visible
from service.domain.events import Event, EventFilter, EventType
from service.domain.ports import Ledger, LiveFeed, Subscription
from service.errors import FailedPrecondition, NotFound, OutOfRange, SubscriberTooSlow, Unavailable

__all__ = [
    "REPLAY_PAGE",
    "SHUTDOWN_RETRY_SECONDS",
    "EventPage",
    "EventWatch",
    "Renderer",
    "Start",
    "WatchRequest",
]

REPLAY_PAGE = 500
"""Events read from the log per ledger call during a replay (more when the batch size is larger)."""
SHUTDOWN_RETRY_SECONDS = 1.0
"""Retry delay suggested by the ``Unavailable`` that ends every stream when the feed shuts down."""

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Start(enum.Enum):
    """Where a watch starts."""

    NOW = "now"
    """After the newest published event: live events only."""
    OLDEST = "oldest"
    """After the oldest retained cursor: everything still in the log, then live."""
    AFTER_CURSOR = "after_cursor"
    """After a cursor the subscriber saw (resuming)."""


@dataclass(frozen=True)
class WatchRequest:
    """What to watch and from where; ``batch_size`` 1 sends events one by one."""

    filter: EventFilter
    start: Start = Start.NOW
    after_cursor: int = 0
    batch_size: int = 1


@dataclass(frozen=True)
class EventPage:
    """One page of the log: ``next_cursor`` continues it; a short page reaches ``head``."""

    events: list[Event]
    next_cursor: int
    head: int


class Renderer(Protocol[T_co]):
    """Turns what a watch sends into the stream's messages (protobuf in the API layer)."""

    def event(self, event: Event) -> T_co:
        """One event on its own (batch size 1)."""

    def batch(self, events: Sequence[Event]) -> T_co:
        """Several events in one message (at most the batch size, in cursor order)."""

    def heartbeat(self, cursor: int) -> T_co:
        """Nothing new: every matching event up to ``cursor`` has been sent."""


@dataclass
class _Position:
    """Where one stream is: the last cursor sent, and the watched sessions not ended yet."""

    last: int
    open_sessions: set[str] = field(default_factory=set)
    ended: bool = False
    """Every watched session has ended: the stream is complete."""


class EventWatch:
    """Reads the event log for subscribers: resumable watches and pages.

    Args:
        ledger: the log's replay side (and the sessions, for scoping).
        feed: live events in cursor order.
        on_delivered: observes each live event's delivery latency (callback arrival -> sent);
            a replayed event's age is how far back the subscriber resumed, so it is not observed.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        ledger: Ledger,
        feed: LiveFeed,
        *,
        on_delivered: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledger = ledger
        self._feed = feed
        self._on_delivered = on_delivered
        self._clock = clock

    # -- pages ---------------------------------------------------------------------------------

    async def page(self, flt: EventFilter, after_cursor: int, size: int) -> EventPage:
        """Up to ``size`` events after ``after_cursor`` (0: from the oldest retained)."""
        flt = await self.scoped(flt)
        # The head is read first: everything up to it is committed, so a short page covers it all.
        purged, head = await self._ledger.event_bounds()
        after = purged if after_cursor == 0 else check_cursor(after_cursor, purged, head)
        events = await self._ledger.events_after(after, size, flt)
        next_cursor = events[-1].cursor if events else after
        if len(events) < size:
            next_cursor = max(next_cursor, head)
        return EventPage(events, next_cursor, head)

    async def scoped(self, flt: EventFilter) -> EventFilter:
        """The filter limited to what the principal may see: a caller's own sessions only, and
        NOT_FOUND for a named session it may not see (or that does not exist)."""
        for session_id in sorted(flt.session_ids):
            record = await self._ledger.get_session(session_id)
            if record is None or not session_visible(record.owner):
                raise NotFound("session", session_id, "SESSION_NOT_FOUND")
        scope = owner_scope()
        return flt if scope is None else dataclasses.replace(flt, owner=scope)

    # -- watches -------------------------------------------------------------------------------

    async def watch(self, request: WatchRequest, render: Renderer[T]) -> AsyncGenerator[T, None]:
        """The stream's messages: the replay, then live events and heartbeats, until every watched
        session has ended (never, without watched sessions), the subscriber falls behind
        (``SubscriberTooSlow``) or the feed shuts down (``Unavailable``)."""
        flt = await self.scoped(request.filter)
        batch_size = max(1, request.batch_size)
        with self._feed.subscribe(flt) as sub:
            at = await self._open(request, flt)
            if at is None:
                return
            async for message in self._replay(sub, flt, at, batch_size, render):
                yield message
            if at.ended:
                return
            while True:  # live
                live = await sub.next()
                if live is None or sub.overflowed or sub.shutting_down:
                    yield self._idle(sub, at, render)  # raises unless it is a heartbeat tick
                elif batch_size == 1:
                    # One event per message: the path every event takes to every such subscriber
                    # (1,000 subscribers = 1,000 passes per event), so it builds nothing it can skip.
                    if live.cursor <= at.last:
                        continue  # already sent by the replay
                    if self._on_delivered is not None:
                        self._on_delivered(max(0.0, self._clock() - live.received_at))
                    yield render.event(live)
                    at.last = live.cursor
                    if at.open_sessions and _ends_the_watch(live, at.open_sessions):
                        return
                else:
                    for message in self._live_batch(sub, live, at, batch_size, render):
                        yield message
                    if at.ended:
                        return

    async def _open(self, request: WatchRequest, flt: EventFilter) -> _Position | None:
        """Where the stream starts; None when every watched session has ended already."""
        last = await self._start_cursor(request)
        # A watch on given sessions completes once every one of them has ended.
        open_sessions = await self._not_over(flt.session_ids, last)
        if flt.session_ids and not open_sessions:
            return None
        return _Position(last, open_sessions)

    async def _start_cursor(self, request: WatchRequest) -> int:
        purged, stored = await self._ledger.event_bounds()
        head = self._feed.head
        if request.start is Start.NOW:
            return head
        if request.start is Start.OLDEST:
            return purged
        # A cursor handed out by another replica may be ahead of this one's feed (its tailer has
        # not read that far yet) but not of the log: it is valid, and the replay reads up to it.
        return check_cursor(request.after_cursor, purged, max(head, stored))

    async def _not_over(self, session_ids: frozenset[str], after: int) -> set[str]:
        """The watched sessions whose ``ended`` event is not at or before ``after`` (still to come)."""
        if not session_ids:
            return set()
        ended = await self._ledger.events_after(
            0,
            2 * len(session_ids),
            EventFilter(session_ids=session_ids, event_types=frozenset({EventType.ENDED})),
        )
        return set(session_ids) - {e.session_id for e in ended if e.cursor <= after and e.session_id}

    async def _replay(
        self, sub: Subscription, flt: EventFilter, at: _Position, batch_size: int, render: Renderer[T]
    ) -> AsyncIterator[T]:
        """The log after ``at.last``, a page at a time (a batch never spans two pages)."""
        page_size = max(REPLAY_PAGE, batch_size)
        while True:
            if sub.shutting_down:
                raise _shutting_down(at.last)
            page = await self._ledger.events_after(at.last, page_size, flt)
            if page:
                events, at.ended = _until_end(page, at.open_sessions)
                for message in _messages(events, batch_size, render):
                    yield message
                at.last = events[-1].cursor
                if at.ended:
                    return
            if len(page) < page_size:
                return

    def _idle(self, sub: Subscription, at: _Position, render: Renderer[T]) -> T:
        """After a wake-up without an event to send: end a stream cut off or shutting down, else
        the heartbeat."""
        if sub.overflowed:
            raise SubscriberTooSlow(
                f"this subscriber fell more than {sub.queue.maxsize} events behind;"
                f" resume after cursor {at.last}"
            )
        if sub.shutting_down:
            raise _shutting_down(at.last)
        # Queue drained: every matching event up to the feed's head has been sent.
        return render.heartbeat(max(at.last, self._feed.head) if sub.queue.empty() else at.last)

    def _live_batch(
        self, sub: Subscription, live: Event, at: _Position, batch_size: int, render: Renderer[T]
    ) -> Iterator[T]:
        """``live`` and whatever is already queued behind it, skipping what the replay sent."""
        ready = [live, *sub.take_ready(batch_size - 1)]
        events, at.ended = _until_end([e for e in ready if e.cursor > at.last], at.open_sessions)
        if not events:
            return
        self._delivered(events)
        yield from _messages(events, batch_size, render)
        at.last = events[-1].cursor

    def _delivered(self, events: Sequence[Event]) -> None:
        if self._on_delivered is not None:
            now = self._clock()
            for event in events:
                self._on_delivered(max(0.0, now - event.received_at))


def check_cursor(after: int, purged: int, head: int) -> int:
    """``after`` if it is a cursor the log can resume after, else why not."""
    if after < purged:
        raise FailedPrecondition(
            "CURSOR_EXPIRED",
            f"cursor:{after}",
            f"events after cursor {after} are no longer retained (oldest resumable cursor is {purged});"
            " list what you need, then watch from now",
        )
    if after > head:
        raise OutOfRange("CURSOR_AHEAD", f"cursor {after} is ahead of the event log (head {head})")
    return after


def _messages(events: Sequence[Event], batch_size: int, render: Renderer[T]) -> Iterator[T]:
    """One message per event, or batches of at most ``batch_size``."""
    if batch_size <= 1:
        for event in events:
            yield render.event(event)
        return
    for i in range(0, len(events), batch_size):
        yield render.batch(events[i : i + batch_size])


def _shutting_down(last: int) -> Unavailable:
    return Unavailable(
        "SHUTTING_DOWN",
        f"the gateway is shutting down; watch again after cursor {last} (on this or another replica)",
        retry_after_seconds=SHUTDOWN_RETRY_SECONDS,
        metadata={"resume_after_cursor": str(last)},
    )


def _ends_the_watch(event: Event, open_sessions: set[str]) -> bool:
    """Whether ``event`` ends the last of the watched sessions still open (and mark it ended)."""
    if event.event_type is EventType.ENDED and event.session_id in open_sessions:
        open_sessions.discard(event.session_id)
        return not open_sessions
    return False


def _until_end(events: list[Event], open_sessions: set[str]) -> tuple[list[Event], bool]:
    """``events`` up to and including the ``ended`` of the last watched session still open, and
    whether it was among them. Without watched sessions (``open_sessions`` empty) the watch never ends."""
    if open_sessions:
        for i, event in enumerate(events):
            if _ends_the_watch(event, open_sessions):
                return events[: i + 1], True
    return events, False
