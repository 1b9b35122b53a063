"""EventService: WatchEvents and ListEvents, mapped to the domain's :mod:`service.domain.watch`.

The replay-then-live join, heartbeats, overflow, completion of a watch on given sessions and the
end of every stream at shutdown (UNAVAILABLE with a RetryInfo and the cursor to resume after, in the
message and as ErrorInfo metadata ``resume_after_cursor``) are the domain's. This module maps the
request to a :class:`~service.domain.watch.WatchRequest` and the events to protobuf: each event is
converted once and the message shared by every stream that sends it. With ``max_batch_size`` >= 2
events go out in ``EventBatch`` messages.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence

from google.protobuf import timestamp_pb2

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as rpc
from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from service.api.common import Context
from service.api.event_convert import event_filter, fill_event
from service.api.paging import page_size
from service.domain.events import Event
from service.domain.validation import Violations
from service.domain.watch import EventWatch, Start, WatchRequest

__all__ = ["EventServicer"]

log = logging.getLogger("agentgw.events")

MAX_BATCH_SIZE = 1000
_CONVERTED_CACHE = 4096
DEFAULT_LIST_PAGE = 100
MAX_LIST_PAGE = 1000
_STARTS = {
    api.START_POSITION_UNSPECIFIED: Start.NOW,
    api.START_POSITION_NOW: Start.NOW,
    api.START_POSITION_OLDEST: Start.OLDEST,
    api.START_POSITION_AFTER_CURSOR: Start.AFTER_CURSOR,
}


class EventServicer(rpc.EventServiceServicer):
    """gRPC face of the event log."""

    def __init__(self, watch: EventWatch, *, on_unreadable: Callable[[str], None] | None = None) -> None:
        self._watch = watch
        self._on_unreadable = on_unreadable
        self._noted: OrderedDict[int, None] = OrderedDict()
        # One conversion per event, not per subscriber: fan-out to N streams reuses the message.
        self._converted: OrderedDict[tuple[int, bool], api.WatchEventsResponse] = OrderedDict()

    def WatchEvents(
        self, request: api.WatchEventsRequest, context: Context
    ) -> AsyncIterator[api.WatchEventsResponse]:
        """The domain's watch, rendered: its generator is the stream (no second one per message)."""
        v = Violations()
        v.in_range("max_batch_size", request.max_batch_size, 0, MAX_BATCH_SIZE)
        v.check(request.start in _STARTS, "start", "is not a known StartPosition")
        flt = event_filter(request.filter, v=v)
        watch = WatchRequest(
            flt, _STARTS[request.start], request.after_cursor, max(1, request.max_batch_size)
        )
        return self._watch.watch(watch, _Rendered(self, request.include_raw))

    async def ListEvents(self, request: api.ListEventsRequest, context: Context) -> api.ListEventsResponse:
        size = page_size(request.page_size, default=DEFAULT_LIST_PAGE, maximum=MAX_LIST_PAGE)
        page = await self._watch.page(event_filter(request.filter), request.after_cursor, size)
        return api.ListEventsResponse(
            events=[self._proto(e, request.include_raw) for e in page.events],
            next_cursor=page.next_cursor,
            head_cursor=page.head,
        )

    def message(self, event: Event, include_raw: bool) -> api.WatchEventsResponse:
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


class _Rendered:
    """One stream's :class:`~service.domain.watch.Renderer`: WatchEventsResponse messages."""

    __slots__ = ("_include_raw", "_servicer")

    def __init__(self, servicer: EventServicer, include_raw: bool) -> None:
        self._servicer = servicer
        self._include_raw = include_raw

    def event(self, event: Event) -> api.WatchEventsResponse:
        return self._servicer.message(event, self._include_raw)

    def batch(self, events: Sequence[Event]) -> api.WatchEventsResponse:
        response = api.WatchEventsResponse()
        response.batch.events.extend([self._servicer.message(e, self._include_raw).event for e in events])
        return response

    def heartbeat(self, cursor: int) -> api.WatchEventsResponse:
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        return api.WatchEventsResponse(heartbeat=api.Heartbeat(cursor=cursor, time=now))
