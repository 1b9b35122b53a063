"""The replay-then-live join (``service.domain.watch``) on its ports alone: a log that is only
read (the Ledger port) and a feed that someone else publishes to in cursor order, as a tailer of a
shared log does in a fleet. No gRPC, no EventLog, no ingest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, cast

import pytest

from service.config import EventSettings
from service.domain.event_log import EventBus
from service.domain.events import Event, EventFilter, EventType
from service.domain.model import SessionKind, SessionRecord, SessionState
from service.domain.ports import Ledger
from service.domain.watch import EventWatch, Start, WatchRequest
from service.errors import FailedPrecondition, NotFound, OutOfRange, SubscriberTooSlow, Unavailable
from tests.conftest import eventually

Message = tuple[str, Any]


class Render:
    """Messages as plain tuples: ("event", cursor), ("batch", [cursors]), ("heartbeat", cursor)."""

    def event(self, event: Event) -> Message:
        return ("event", event.cursor)

    def batch(self, events: Sequence[Event]) -> Message:
        return ("batch", [e.cursor for e in events])

    def heartbeat(self, cursor: int) -> Message:
        return ("heartbeat", cursor)


class SharedLog:
    """The read side of a log other processes write: what the watch reads through the Ledger port.

    ``commit`` stores an event; ``tail`` publishes what is committed to the feed in cursor order
    (what a fleet's tailer does); ``commits_during_read`` events are committed and tailed as the
    next replay read starts (a commit racing the replay).
    """

    def __init__(self, feed: EventBus) -> None:
        self.events: list[Event] = []
        self.sessions: dict[str, SessionRecord] = {}
        self.purged = 0
        self.feed = feed
        self.published = 0
        self.commits_during_read = 0

    def commit(self, event_type: EventType = EventType.LLM_RESULT, session_id: str = "s1") -> Event:
        event = Event(
            event_type=event_type,
            session_id=session_id,
            instance_id="i1",
            agent_id="a",
            room_id="r",
            event_time_ms=0,
            received_at=0.0,
            sequence=None,
            round=None,
            data={},
            cursor=len(self.events) + 1,
        )
        self.events.append(event)
        return event

    def tail(self) -> None:
        for event in self.events[self.published :]:
            self.feed.publish(event)
        self.published = len(self.events)

    def add_session(self, session_id: str) -> None:
        self.sessions[session_id] = SessionRecord(
            session_id, SessionKind.VOICE, SessionState.ACTIVE, "a", "u", "r", "au", "as", "us", {}, 60,
            None, None, 0.0, 0.0,
        )  # fmt: skip

    # -- the part of the Ledger port a watch uses ------------------------------------------------

    async def event_bounds(self) -> tuple[int, int]:
        return self.purged, len(self.events)

    async def events_after(self, after: int, limit: int, flt: EventFilter) -> list[Event]:
        for _ in range(self.commits_during_read):  # in the page read *and* in the feed's queue
            self.commit()
            self.tail()
        self.commits_during_read = 0
        return [e for e in self.events if e.cursor > after and e.cursor > self.purged and flt.matches(e)][
            :limit
        ]

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return self.sessions.get(session_id)


@pytest.fixture
async def feed() -> AsyncIterator[EventBus]:
    async with EventBus(settings=EventSettings(subscriber_queue_size=8, heartbeat_seconds=3600)) as bus:
        yield bus


@pytest.fixture
def log(feed: EventBus) -> SharedLog:
    return SharedLog(feed)


@pytest.fixture
def watch(log: SharedLog, feed: EventBus) -> EventWatch:
    return EventWatch(cast(Ledger, log), feed)


async def take(stream: AsyncGenerator[Message, None], n: int) -> list[Message]:
    async with asyncio.timeout(5):
        return [await anext(stream) for _ in range(n)]


async def test_replay_then_live_has_no_gap_and_no_duplicate(log: SharedLog, watch: EventWatch) -> None:
    for _ in range(3):
        log.commit()
    log.tail()
    log.commits_during_read = 1  # cursor 4: replayed, and queued for the subscriber too
    stream = watch.watch(WatchRequest(EventFilter(), Start.AFTER_CURSOR, after_cursor=1), Render())
    assert await take(stream, 3) == [("event", 2), ("event", 3), ("event", 4)]
    log.commit()
    log.tail()
    assert await take(stream, 1) == [("event", 5)]  # cursor 4 was not sent twice
    await stream.aclose()


async def test_live_batches_and_heartbeats_carry_the_feeds_head(
    log: SharedLog, feed: EventBus, watch: EventWatch
) -> None:
    stream = watch.watch(WatchRequest(EventFilter(), Start.NOW, batch_size=10), Render())
    first = asyncio.ensure_future(anext(stream))
    await eventually(lambda: feed.subscriber_count == 1)
    for _ in range(3):
        log.commit()
    log.tail()
    async with asyncio.timeout(5):
        assert await first == ("batch", [1, 2, 3])  # all that was queued, in one batch
    log.commit()
    log.tail()
    assert await take(stream, 1) == [("batch", [4])]
    feed.head = 9  # published to others: nothing matched this subscriber's filter
    for sub in list(feed._subscribers):
        sub.tick()
    assert await take(stream, 1) == [("heartbeat", 9)]
    await stream.aclose()


async def test_a_watch_of_sessions_completes_when_the_last_one_ends(
    log: SharedLog, watch: EventWatch
) -> None:
    log.add_session("s1")
    log.add_session("s2")
    log.commit(EventType.ENDED, "s1")
    log.tail()
    flt = EventFilter(session_ids=frozenset({"s1", "s2"}))
    got = [m async for m in _until_done(watch.watch(WatchRequest(flt, Start.OLDEST), Render()), log)]
    assert got == [("event", 1), ("event", 2), ("event", 3)]


async def _until_done(stream: AsyncIterator[Message], log: SharedLog) -> AsyncIterator[Message]:
    async with asyncio.timeout(5):
        yield await anext(stream)  # the replayed end of s1
        log.commit(session_id="s2")
        log.commit(EventType.ENDED, "s2")
        log.commit(session_id="s2")  # after its end: never sent, the watch is complete
        log.tail()
        async for message in stream:
            yield message


async def test_an_unknown_session_is_not_found(watch: EventWatch) -> None:
    with pytest.raises(NotFound):
        await anext(watch.watch(WatchRequest(EventFilter(session_ids=frozenset({"nope"}))), Render()))


async def test_cursors_outside_the_log_are_refused(log: SharedLog, watch: EventWatch) -> None:
    for _ in range(4):
        log.commit()
    log.tail()
    log.purged = 2
    with pytest.raises(FailedPrecondition, match="no longer retained"):
        await anext(watch.watch(WatchRequest(EventFilter(), Start.AFTER_CURSOR, after_cursor=1), Render()))
    with pytest.raises(OutOfRange):
        await anext(watch.watch(WatchRequest(EventFilter(), Start.AFTER_CURSOR, after_cursor=5), Render()))


async def test_a_subscriber_that_falls_behind_is_cut_off_with_its_cursor(
    log: SharedLog, feed: EventBus, watch: EventWatch
) -> None:
    stream = watch.watch(WatchRequest(EventFilter(), Start.NOW), Render())
    first = asyncio.ensure_future(anext(stream))
    await eventually(lambda: feed.subscriber_count == 1)
    log.commit()
    log.tail()
    assert await first == ("event", 1)
    for _ in range(20):  # more than its queue of 8, while it is not reading
        log.commit()
    log.tail()
    with pytest.raises(SubscriberTooSlow, match="resume after cursor 1"):
        await take(stream, 20)


async def test_shutdown_ends_every_stream_with_the_cursor_to_resume_after(
    log: SharedLog, feed: EventBus, watch: EventWatch
) -> None:
    log.commit()
    log.tail()
    streams = [watch.watch(WatchRequest(EventFilter(), Start.OLDEST), Render()) for _ in range(2)]
    for stream in streams:
        assert await take(stream, 1) == [("event", 1)]
    feed.shut_down()
    for stream in streams:
        with pytest.raises(Unavailable) as ended:
            await take(stream, 1)
        assert ended.value.metadata == {"resume_after_cursor": "1"}
        assert ended.value.reason == "SHUTTING_DOWN"


async def test_a_page_reaches_the_head_when_it_is_short(log: SharedLog, watch: EventWatch) -> None:
    for _ in range(3):
        log.commit()
    log.commit(session_id="s2")
    page = await watch.page(EventFilter(session_ids=frozenset()), 0, 10)
    assert [e.cursor for e in page.events] == [1, 2, 3, 4] and page.next_cursor == page.head == 4
    page = await watch.page(EventFilter(), 1, 2)
    assert [e.cursor for e in page.events] == [2, 3] and page.next_cursor == 3
