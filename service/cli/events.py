"""``agentgw events tail``: follow WatchEvents, resuming by cursor by itself when the stream breaks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import click
import grpc

from agentgw_client.gen.agentgw.v1 import event_service_pb2, session_event_pb2
from service.cli.app import Context, pass_context
from service.cli.client import Connection, RpcFailure
from service.cli.output import fmt_time, safe, to_dict
from service.cli.timeline import describe_event

__all__ = ["EVENT_TYPES", "RESUMABLE", "events", "watch_request"]

EVENT_TYPES = tuple(
    name.removeprefix("EVENT_TYPE_").lower()
    for name in session_event_pb2.EventType.keys()
    if name != "EVENT_TYPE_UNSPECIFIED"
)

RESUMABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,  # the gateway restarted, or a connection-age rotation
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # SUBSCRIBER_TOO_SLOW: we fell behind; resume from the cursor
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,  # a broken HTTP/2 stream (RST_STREAM) surfaces as INTERNAL
        grpc.StatusCode.CANCELLED,  # the server cancelled the stream at shutdown
    }
)
"""Codes after which the stream is resumed from the last cursor; anything else ends the tail."""

_BACKOFF_START, _BACKOFF_MAX = 0.2, 5.0


def watch_request(
    *,
    sessions: tuple[str, ...] = (),
    agent: str = "",
    room: str = "",
    types: tuple[str, ...] = (),
    selector: str = "",
    cursor: int | None = None,
    oldest: bool = False,
    include_raw: bool = False,
) -> event_service_pb2.WatchEventsRequest:
    """A WatchEvents request: from ``cursor`` if given, else from the oldest event or from now."""
    if cursor is not None:
        start = event_service_pb2.START_POSITION_AFTER_CURSOR
    elif oldest:
        start = event_service_pb2.START_POSITION_OLDEST
    else:
        start = event_service_pb2.START_POSITION_NOW
    return event_service_pb2.WatchEventsRequest(
        filter=event_service_pb2.EventFilter(
            session_ids=list(sessions),
            agent_id=agent,
            room_id=room,
            event_types=[session_event_pb2.EventType.Value(f"EVENT_TYPE_{t.upper()}") for t in types],
            label_selector=selector,
        ),
        start=start,
        after_cursor=cursor or 0,
        include_raw=include_raw,
    )


class _Stop(Exception):
    """The follow loop is done (the consumer had enough, the watched session ended, or ``stop``)."""


def _events_of(response: event_service_pb2.WatchEventsResponse) -> list[session_event_pb2.SessionEvent]:
    item = response.WhichOneof("item")
    if item == "event":
        return [response.event]
    return list(response.batch.events) if item == "batch" else []


class _Follower:
    """One ``follow`` loop's state: the last cursor seen, the backoff and the reconnects so far."""

    def __init__(
        self,
        connection: Connection,
        request: event_service_pb2.WatchEventsRequest,
        on_event: Callable[[session_event_pb2.SessionEvent], bool],
        stop: threading.Event | None,
        on_stream: Callable[[Any], None] | None,
    ) -> None:
        self.connection, self.request, self.on_event = connection, request, on_event
        self.stop, self.on_stream = stop, on_stream
        resuming = request.start == event_service_pb2.START_POSITION_AFTER_CURSOR
        self.cursor: int | None = request.after_cursor if resuming else None
        self.backoff = _BACKOFF_START
        self.reconnects = 0

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def stream_once(self) -> str:
        """Open one stream and deliver its events; returns why it ended when it should be resumed,
        raises :class:`_Stop` when the loop is done and RpcFailure for a non-resumable error."""
        request = self.request
        if self.cursor is not None:
            request.start, request.after_cursor = event_service_pb2.START_POSITION_AFTER_CURSOR, self.cursor
        channel = self.connection.channel()
        try:
            stream = self.connection.stubs(channel).events.WatchEvents(request)
            if self.on_stream is not None:
                self.on_stream(stream)
            return self._read(stream)
        finally:
            channel.close()

    def _read(self, stream: Any) -> str:
        try:
            self._deliver(stream)
        except grpc.RpcError as exc:
            if self.stopped():
                raise _Stop from None
            if exc.code() not in RESUMABLE:
                raise RpcFailure(exc) from None
            return f"the stream broke ({exc.code().name})"
        if len(self.request.filter.session_ids) == 1:
            raise _Stop  # completed with OK after the watched session's ENDED: done
        return "the stream ended"  # never by contract; resume rather than stop silently

    def _deliver(self, stream: Any) -> None:
        for response in stream:
            self.backoff = _BACKOFF_START
            if response.WhichOneof("item") == "heartbeat":
                self.cursor = max(self.cursor or 0, response.heartbeat.cursor)
            for event in _events_of(response):
                self.cursor = event.cursor
                if not self.on_event(event):
                    stream.cancel()
                    raise _Stop

    def where(self) -> str:
        return f"after cursor {self.cursor}" if self.cursor is not None else "from now (no cursor seen yet)"


def follow(
    connection: Connection,
    request: event_service_pb2.WatchEventsRequest,
    on_event: Callable[[session_event_pb2.SessionEvent], bool],
    *,
    notify: Callable[[str], None],
    max_reconnects: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
    on_stream: Callable[[Any], None] | None = None,
) -> None:
    """Deliver every event to ``on_event`` (which returns False to stop), resuming after breaks.

    The stream is resumed with ``START_POSITION_AFTER_CURSOR`` from the last cursor seen (an event's
    or a heartbeat's), so no event is lost or repeated across a gateway restart. Each resume is
    announced through ``notify`` (stderr for ``events tail``). A non-resumable error (a bad
    filter, CURSOR_EXPIRED) raises RpcFailure.
    ``stop`` ends the loop from another thread, which should also cancel the call it got from
    ``on_stream``. Watching one session, the stream's completion (OK, after its ENDED event)
    ends the loop.
    """
    follower = _Follower(connection, request, on_event, stop, on_stream)
    while True:
        try:
            why = follower.stream_once()
        except _Stop:
            return
        if follower.stopped():
            return
        follower.reconnects += 1
        if max_reconnects is not None and follower.reconnects > max_reconnects:
            raise click.ClickException(f"{why}; gave up after {max_reconnects} reconnects")
        notify(f"agentgw: {why}; resuming {follower.where()} in {follower.backoff:.1f}s")
        if stop is not None:
            if stop.wait(follower.backoff):
                return
        else:
            sleep(follower.backoff)
        follower.backoff = min(_BACKOFF_MAX, follower.backoff * 2)


@click.group()
def events() -> None:
    """Follow the event stream.

    \b
    Example:
      agentgw events tail --session SESSION_ID
    """


@events.command()
@click.option("--session", "sessions", multiple=True, help="Only this session (repeatable).")
@click.option("--agent", default="", help="Only this agent_id.")
@click.option("--room", default="", help="Only this room_id.")
@click.option("--type", "types", multiple=True, type=click.Choice(EVENT_TYPES), help="Repeatable.")
@click.option("-l", "--selector", default="", help="Label selector, e.g. 'team=support'.")
@click.option("--from-cursor", type=click.IntRange(min=0), default=None, help="Resume after this cursor.")
@click.option("--oldest", is_flag=True, help="Start from the oldest retained event (default: from now).")
@click.option("--raw", "include_raw", is_flag=True, help="Include ZEGO's raw callback JSON.")
@click.option("-n", "--count", type=click.IntRange(min=1), default=None, help="Stop after this many events.")
@click.option(
    "--max-reconnects", type=click.IntRange(min=0), default=None, help="Give up after this many resumes."
)
@pass_context
def tail(
    ctx: Context,
    sessions: tuple[str, ...],
    agent: str,
    room: str,
    types: tuple[str, ...],
    selector: str,
    from_cursor: int | None,
    oldest: bool,
    include_raw: bool,
    count: int | None,
    max_reconnects: int | None,
) -> None:
    """Print events as they happen; resumes by cursor by itself when the stream breaks.

    With one --session it stops after that session's ended event.

    \b
    Examples:
      agentgw events tail --type latency_budget_exceeded
      agentgw events tail --from-cursor 1200 -o json | jq -c '{cursor, session_id}'
    """
    request = watch_request(
        sessions=sessions,
        agent=agent,
        room=room,
        types=types,
        selector=selector,
        cursor=from_cursor,
        oldest=oldest,
        include_raw=include_raw,
    )
    seen = 0

    def show(event: session_event_pb2.SessionEvent) -> bool:
        nonlocal seen
        seen += 1
        if ctx.printer.structured:
            ctx.printer.line(to_dict(event))
        else:
            what, detail = describe_event(event)
            ctx.printer.text(
                safe(f"{event.cursor:>8}  {fmt_time(event.event_time)}  {event.session_id}  {what}  {detail}")
            )
        return count is None or seen < count

    follow(ctx.connection, request, show, notify=ctx.printer.notice, max_reconnects=max_reconnects)
