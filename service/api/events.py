"""EventService: WatchEvents (replay, then live, with heartbeats) and ListEvents.

The no-gap, no-duplicate join works like this: the subscription is opened *before* the log is
read, so every event committed after that moment is in its queue; the replay reads the log up to
its end; then live events are taken from the queue, skipping any cursor the replay already sent.
Live events arrive in cursor order because the log publishes under the same lock it appends with.

A watch on given session ids answers NOT_FOUND if one of them does not exist, and completes once
every one of them has ended (after sending their ``ended`` events). When the gateway shuts down, the
bus tells every subscription at once and each stream ends with UNAVAILABLE, a RetryInfo and the
cursor to resume after (in the message and as ErrorInfo metadata ``resume_after_cursor``), instead
of waiting for gRPC's grace period to cancel it.

With ``max_batch_size`` >= 2 the same events go out in ``EventBatch`` messages: a replay page is
cut into batches, and a live batch is the event that woke the stream plus whatever is already
queued behind it (``Subscription.take_ready``). Nothing ever waits to fill a batch.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as rpc
from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from service.api.event_convert import event_filter, fill_event
from service.api.paging import page_size
from service.domain.access import owner_scope, session_visible
from service.domain.event_log import EventBus
from service.domain.events import Event, EventFilter, EventType
from service.domain.validation import Violations
from service.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    OutOfRange,
    SubscriberTooSlow,
    Unavailable,
)
from service.store.base import Ledger

__all__ = ["EventServicer"]

log = logging.getLogger("agentgw.events")

Context = grpc.aio.ServicerContext[Any, Any]
REPLAY_PAGE = 500
"""Events read from the log per ledger call during a replay (more when max_batch_size is larger)."""
MAX_BATCH_SIZE = 1000
_CONVERTED_CACHE = 4096
SHUTDOWN_RETRY_SECONDS = 1.0
"""RetryInfo of the UNAVAILABLE that ends every stream when the gateway shuts down."""
DEFAULT_LIST_PAGE = 100
MAX_LIST_PAGE = 1000


class EventServicer(rpc.EventServiceServicer):
    """gRPC face of the event log."""

    def __init__(
        self,
        ledger: Ledger,
        bus: EventBus,
        *,
        on_delivered: Callable[[float], None] | None = None,
        on_unreadable: Callable[[str], None] | None = None,
    ) -> None:
        self._ledger = ledger
        self._bus = bus
        self._on_delivered = on_delivered
        self._on_unreadable = on_unreadable
        self._noted: OrderedDict[int, None] = OrderedDict()
        # One conversion per event, not per subscriber: fan-out to N streams reuses the message.
        self._converted: OrderedDict[tuple[int, bool], api.WatchEventsResponse] = OrderedDict()

    async def _start_cursor(self, start: int, after_cursor: int, field: str = "after_cursor") -> int:
        purged, stored = await self._ledger.event_bounds()
        head = self._bus.head
        if start in (api.START_POSITION_UNSPECIFIED, api.START_POSITION_NOW):
            return head
        if start == api.START_POSITION_OLDEST:
            return purged
        if start != api.START_POSITION_AFTER_CURSOR:
            raise InvalidArgument([FieldViolation("start", "is not a known StartPosition")])
        # A cursor handed out by another replica may be ahead of this one's bus (its tailer has not
        # read that far yet) but not of the log: it is valid, and the replay reads up to it.
        return self._check_cursor(after_cursor, purged, max(head, stored))

    @staticmethod
    def _check_cursor(after: int, purged: int, head: int) -> int:
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

    def _message(self, event: Event, include_raw: bool) -> api.WatchEventsResponse:
        """The event's one-event message, converted once and shared by every stream that sends it."""
        key = (event.cursor, include_raw)
        message = self._converted.get(key)
        if message is None:
            message = api.WatchEventsResponse()
            if fill_event(message.event, event, include_raw=include_raw):
                self._note_unreadable(message.event)
            self._converted[key] = message
            if len(self._converted) > _CONVERTED_CACHE:
                self._converted.popitem(last=False)
        return message

    def _proto(self, event: Event, include_raw: bool) -> epb.SessionEvent:
        """``event_to_proto``, noting an unreadable event."""
        msg = epb.SessionEvent()
        if fill_event(msg, event, include_raw=include_raw):
            self._note_unreadable(msg)
        return msg

    def _note_unreadable(self, msg: epb.SessionEvent) -> None:
        """Count and log an event delivered as unreadable, once per cursor (not per subscriber)."""
        if msg.cursor in self._noted:
            return
        self._noted[msg.cursor] = None
        if len(self._noted) > _CONVERTED_CACHE:
            self._noted.popitem(last=False)
        stored_type = msg.unreadable.stored_type
        log.warning(
            "stored event cannot be converted; delivered as unreadable",
            extra={"cursor": msg.cursor, "stored_type": stored_type, "reason": msg.unreadable.reason},
        )
        if self._on_unreadable is not None:
            self._on_unreadable(stored_type)

    def _delivered(self, events: Sequence[Event]) -> None:
        """Observe live events' delivery latency (callback arrival -> written to this stream)."""
        if self._on_delivered is not None:
            now = time.time()
            for event in events:
                self._on_delivered(max(0.0, now - event.received_at))

    def _send(
        self, events: Sequence[Event], batch_size: int, include_raw: bool, *, live: bool
    ) -> Iterator[api.WatchEventsResponse]:
        """The messages for ``events``: one each, or batches of at most ``batch_size``.

        Only ``live`` events count as deliveries in the latency histogram: a replayed event's age is
        how far back the subscriber resumed, not how fast the gateway delivers.
        """
        if batch_size <= 1:
            for event in events:
                if live:
                    self._delivered((event,))
                yield self._message(event, include_raw)
            return
        for i in range(0, len(events), batch_size):
            chunk = events[i : i + batch_size]
            if live:
                self._delivered(chunk)
            response = api.WatchEventsResponse()
            response.batch.events.extend([self._message(e, include_raw).event for e in chunk])
            yield response

    async def WatchEvents(
        self, request: api.WatchEventsRequest, context: Context
    ) -> AsyncIterator[api.WatchEventsResponse]:
        v = Violations()
        v.in_range("max_batch_size", request.max_batch_size, 0, MAX_BATCH_SIZE)
        flt = await self._scoped(event_filter(request.filter, v=v))
        batch_size = max(1, request.max_batch_size)
        include_raw = request.include_raw
        with self._bus.subscribe(flt) as sub:
            last = await self._start_cursor(request.start, request.after_cursor)
            # A watch on given sessions completes once every one of them has ended.
            open_sessions = await self._not_over(flt.session_ids, last)
            if flt.session_ids and not open_sessions:
                return
            page_size = max(REPLAY_PAGE, batch_size)
            while True:  # replay from the log, a page at a time (a batch never spans two pages)
                if sub.shutting_down:
                    raise _shutting_down(last)
                page = await self._ledger.events_after(last, page_size, flt)
                if page:
                    events, ended = _until_end(page, open_sessions)
                    for message in self._send(events, batch_size, include_raw, live=False):
                        yield message
                    last = events[-1].cursor
                    if ended:
                        return
                if len(page) < page_size:
                    break
            while True:  # live
                live = await sub.next()
                if sub.overflowed:
                    raise SubscriberTooSlow(
                        f"this subscriber fell more than {sub.queue.maxsize} events behind;"
                        f" resume after cursor {last}"
                    )
                if sub.shutting_down:
                    raise _shutting_down(last)
                if live is None:
                    # Queue drained: every matching event up to the bus head has been sent.
                    cursor = max(last, self._bus.head) if sub.queue.empty() else last
                    now = timestamp_pb2.Timestamp()
                    now.GetCurrentTime()
                    yield api.WatchEventsResponse(heartbeat=api.Heartbeat(cursor=cursor, time=now))
                    continue
                if batch_size == 1:
                    # One event per message: the path every event takes to every such subscriber
                    # (1,000 subscribers = 1,000 passes per event), so it builds nothing it can skip.
                    if live.cursor <= last:
                        continue  # already sent by the replay
                    if self._on_delivered is not None:
                        self._on_delivered(max(0.0, time.time() - live.received_at))
                    yield self._message(live, include_raw)
                    last = live.cursor
                    if open_sessions and _ends_the_watch(live, open_sessions):
                        return
                    continue
                # Whatever else is queued already goes in the same batch; nothing waits for more.
                ready = [live, *sub.take_ready(batch_size - 1)]
                # Events the replay already sent (cursor <= last) are skipped.
                events, ended = _until_end([e for e in ready if e.cursor > last], open_sessions)
                if not events:
                    continue
                for message in self._send(events, batch_size, include_raw, live=True):
                    yield message
                last = events[-1].cursor
                if ended:
                    return

    async def _scoped(self, flt: EventFilter) -> EventFilter:
        """The filter limited to what the principal may see: a caller's own sessions only, and
        NOT_FOUND for a named session it may not see (or that does not exist)."""
        for session_id in sorted(flt.session_ids):
            record = await self._ledger.get_session(session_id)
            if record is None or not session_visible(record.owner):
                raise NotFound("session", session_id, "SESSION_NOT_FOUND")
        scope = owner_scope()
        return flt if scope is None else dataclasses.replace(flt, owner=scope)

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

    async def ListEvents(self, request: api.ListEventsRequest, context: Context) -> api.ListEventsResponse:
        flt = await self._scoped(event_filter(request.filter))
        size = page_size(request.page_size, default=DEFAULT_LIST_PAGE, maximum=MAX_LIST_PAGE)
        # The head is read first: everything up to it is committed, so a short page covers it all.
        purged, head = await self._ledger.event_bounds()
        after = (
            purged if request.after_cursor == 0 else self._check_cursor(request.after_cursor, purged, head)
        )
        events = await self._ledger.events_after(after, size, flt)
        next_cursor = events[-1].cursor if events else after
        if len(events) < size:
            next_cursor = max(next_cursor, head)
        return api.ListEventsResponse(
            events=[self._proto(e, request.include_raw) for e in events],
            next_cursor=next_cursor,
            head_cursor=head,
        )


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
