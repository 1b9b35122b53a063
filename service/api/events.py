"""EventService: WatchEvents (replay, then live, with heartbeats) and ListEvents.

The no-gap, no-duplicate join works like this: the subscription is opened *before* the log is
read, so every event committed after that moment is in its queue; the replay reads the log up to
its end; then live events are taken from the queue, skipping any cursor the replay already sent.
Live events arrive in cursor order because the log publishes under the same lock it appends with.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from service.api.event_convert import event_filter, event_to_proto
from service.api.paging import page_size
from service.domain.event_log import EventBus
from service.domain.events import Event, EventFilter, EventType
from service.errors import FailedPrecondition, FieldViolation, InvalidArgument, OutOfRange, SubscriberTooSlow
from service.gen.agentgw.v1 import event_service_pb2 as api
from service.gen.agentgw.v1 import event_service_pb2_grpc as rpc
from service.store.base import Ledger

__all__ = ["EventServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
REPLAY_BATCH = 500
_CONVERTED_CACHE = 4096
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
    ) -> None:
        self._ledger = ledger
        self._bus = bus
        self._on_delivered = on_delivered
        # One conversion per event, not per subscriber: fan-out to N streams reuses the message.
        self._converted: OrderedDict[tuple[int, bool], api.WatchEventsResponse] = OrderedDict()

    async def _start_cursor(self, start: int, after_cursor: int, field: str = "after_cursor") -> int:
        purged, _ = await self._ledger.event_bounds()
        head = self._bus.head
        if start in (api.START_POSITION_UNSPECIFIED, api.START_POSITION_NOW):
            return head
        if start == api.START_POSITION_OLDEST:
            return purged
        if start != api.START_POSITION_AFTER_CURSOR:
            raise InvalidArgument([FieldViolation("start", "is not a known StartPosition")])
        return self._check_cursor(after_cursor, purged, head)

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

    def _deliver(self, event: Event, include_raw: bool) -> api.WatchEventsResponse:
        if self._on_delivered is not None:
            self._on_delivered(max(0.0, time.time() - event.received_at))
        key = (event.cursor, include_raw)
        message = self._converted.get(key)
        if message is None:
            message = api.WatchEventsResponse(event=event_to_proto(event, include_raw=include_raw))
            self._converted[key] = message
            if len(self._converted) > _CONVERTED_CACHE:
                self._converted.popitem(last=False)
        return message

    async def WatchEvents(
        self, request: api.WatchEventsRequest, context: Context
    ) -> AsyncIterator[api.WatchEventsResponse]:
        flt = event_filter(request.filter)
        single = next(iter(flt.session_ids)) if len(flt.session_ids) == 1 else None
        with self._bus.subscribe(flt) as sub:
            last = await self._start_cursor(request.start, request.after_cursor)
            if single is not None and await self._already_over(single, last):
                return
            while True:  # replay from the log
                batch = await self._ledger.events_after(last, REPLAY_BATCH, flt)
                for event in batch:
                    yield self._deliver(event, request.include_raw)
                    last = event.cursor
                    if _ends(event, single):
                        return
                if len(batch) < REPLAY_BATCH:
                    break
            while True:  # live
                live = await sub.next()
                if sub.overflowed:
                    raise SubscriberTooSlow(
                        f"this subscriber fell more than {sub.queue.maxsize} events behind;"
                        f" resume after cursor {last}"
                    )
                if live is None:
                    # Queue drained: every matching event up to the bus head has been sent.
                    cursor = max(last, self._bus.head) if sub.queue.empty() else last
                    now = timestamp_pb2.Timestamp()
                    now.GetCurrentTime()
                    yield api.WatchEventsResponse(heartbeat=api.Heartbeat(cursor=cursor, time=now))
                    continue
                if live.cursor <= last:
                    continue  # already sent by the replay
                yield self._deliver(live, request.include_raw)
                last = live.cursor
                if _ends(live, single):
                    return

    async def _already_over(self, session_id: str, after: int) -> bool:
        """A single-session watch starting after that session's end completes at once."""
        ended = await self._ledger.events_after(
            0, 1, EventFilter(session_ids=frozenset({session_id}), event_types=frozenset({EventType.ENDED}))
        )
        return bool(ended) and ended[0].cursor <= after

    async def ListEvents(self, request: api.ListEventsRequest, context: Context) -> api.ListEventsResponse:
        flt = event_filter(request.filter)
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
            events=[event_to_proto(e, include_raw=request.include_raw) for e in events],
            next_cursor=next_cursor,
            head_cursor=head,
        )


def _ends(event: Event, single: str | None) -> bool:
    return single is not None and event.event_type is EventType.ENDED and event.session_id == single
