"""EventBus and EventLog in isolation: ordering, filtering, overflow."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.config import EventSettings
from service.domain.event_log import EventBus, EventLog, EventMetrics
from service.domain.events import Event, EventFilter, EventType, NewEvent
from service.domain.model import (
    EndReason,
    LabelOp,
    LabelRequirement,
    NewSession,
    SessionKind,
    SessionRecord,
    SessionState,
)
from service.store.sqlite import SqliteLedger
from tests.backends import LedgerFactory


def event(cursor: int, kind: EventType = EventType.LLM_RESULT, **kw: object) -> Event:
    base: dict[str, object] = {
        "event_type": kind,
        "session_id": "s1",
        "instance_id": "i1",
        "agent_id": "a",
        "room_id": "r",
        "event_time_ms": 0,
        "received_at": 0.0,
        "sequence": cursor,
        "round": 1,
        "data": {},
        "cursor": cursor,
    }
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


class Counting:
    def __init__(self) -> None:
        self.added = self.removed = self.overflows = 0

    def subscriber_added(self) -> None:
        self.added += 1

    def subscriber_removed(self) -> None:
        self.removed += 1

    def subscriber_overflow(self) -> None:
        self.overflows += 1


async def test_overflow_cuts_off_only_the_full_subscriber() -> None:
    observer = Counting()
    bus = EventBus(settings=EventSettings(subscriber_queue_size=3), observer=observer)
    slow, fast = bus.subscribe(EventFilter()), bus.subscribe(EventFilter())
    for cursor in range(1, 6):
        bus.publish(event(cursor))
        got = await fast.next(0.1)
        assert got is not None and got.cursor == cursor
    assert slow.overflowed and not fast.overflowed
    assert await slow.next(0.01) is None
    assert (observer.added, observer.removed, observer.overflows) == (2, 1, 1)
    fast.close()
    fast.close()  # idempotent
    assert bus.subscriber_count == 0 and observer.removed == 2


async def test_filters_apply_to_live_events() -> None:
    bus = EventBus()
    flt = EventFilter(
        room_id="r",
        event_types=frozenset({EventType.ASR_RESULT}),
        label_selector=(LabelRequirement("tier", LabelOp.EQUALS, "gold"),),
    )
    with bus.subscribe(flt) as sub:
        bus.publish(event(1, EventType.ASR_RESULT, labels={"tier": "gold"}))
        bus.publish(event(2, EventType.ASR_RESULT, labels={"tier": "free"}))
        bus.publish(event(3, EventType.LLM_RESULT, labels={"tier": "gold"}))
        bus.publish(event(4, EventType.ASR_RESULT, room_id="other", labels={"tier": "gold"}))
        first = await sub.next(0.1)
        assert first is not None and first.cursor == 1
        assert await sub.next(0.05) is None
    # User audio is opt-in: only subscribers that name the type get it.
    with bus.subscribe(EventFilter()) as everything:
        bus.publish(event(5, EventType.USER_AUDIO))
        assert await everything.next(0.05) is None
    assert bus.head == 5


async def test_concurrent_appends_publish_in_cursor_order(tmp_path: Path, make_ledger: LedgerFactory) -> None:
    ledger = make_ledger(tmp_path / "l.db")
    await ledger.open()
    bus = EventBus(settings=EventSettings(subscriber_queue_size=1000))
    log = EventLog(ledger, bus)
    await log.start()
    with bus.subscribe(EventFilter()) as sub:

        async def append(i: int) -> None:
            await log.append(
                NewEvent(EventType.LLM_RESULT, None, "i", "a", "r", 0, 0.0, i, None, {"text": str(i)})
            )

        await asyncio.gather(*(append(i) for i in range(200)))
        cursors = []
        while (got := await sub.next(0.01)) is not None:
            cursors.append(got.cursor)
    assert cursors == sorted(cursors) and len(cursors) == 200
    # A ZEGO retry of a stored (instance, Sequence) is not stored or published again.
    assert await log.append(NewEvent(EventType.LLM_RESULT, None, "i", "a", "r", 0, 0.0, 7, None, {})) is None
    await ledger.close()


async def test_take_ready_drains_queued_events_without_waiting() -> None:
    bus = EventBus(settings=EventSettings(subscriber_queue_size=10))
    sub = bus.subscribe(EventFilter())
    assert sub.take_ready(5) == []  # nothing queued: returns at once
    sub.tick()  # a heartbeat tick in the idle queue, then a burst of events behind it
    for cursor in range(1, 5):
        bus.publish(event(cursor))
    assert [e.cursor for e in sub.take_ready(3)] == [1, 2, 3]  # the tick is dropped, the limit kept
    assert [e.cursor for e in sub.take_ready(3)] == [4]
    assert sub.queue.empty()
    sub.close()
    small = EventBus(settings=EventSettings(subscriber_queue_size=2))
    full = small.subscribe(EventFilter())
    for cursor in range(1, 4):
        small.publish(event(cursor))
    assert full.overflowed and full.take_ready(5) == []  # an overflowed subscriber gets nothing more


class Heard:
    """An observer that keeps what it hears, or one that always fails."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.heard: list[tuple[int, SessionState | None]] = []

    def event_committed(self, event: Event, session: SessionRecord | None) -> None:
        if self.fail:
            raise RuntimeError("observer bug")
        self.heard.append((event.cursor, session.state if session else None))


class Counts:
    """``LogMetrics``: what EventMetrics reports."""

    def __init__(self) -> None:
        self.appended: list[str] = []
        self.ended: list[tuple[str, str, float | None]] = []

    def event_appended(self, event_type: str) -> None:
        self.appended.append(event_type)

    def session_ended(self, kind: str, reason: str, duration_seconds: float | None = None) -> None:
        self.ended.append((kind, reason, duration_seconds))


async def test_observers_given_at_construction_hear_every_commit_in_order(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.db")
    await ledger.open()
    new = NewSession("s1", SessionKind.VOICE, "a", "u", "r", "au", "as", "us", {}, 60, None, None, 100.0)
    await ledger.reserve_session(new, 10)
    broken, heard, counts = Heard(fail=True), Heard(), Counts()
    log = EventLog(ledger, EventBus(), clock=lambda: 130.0, observers=[broken, EventMetrics(counts), heard])
    await log.start()
    # A failing observer breaks neither the append nor the observers after it.
    stored = await log.append(NewEvent(EventType.LLM_RESULT, "s1", "i", "a", "r", 0, 0.0, 1, None, {}))
    assert stored is not None
    hidden = NewEvent(EventType.LLM_RESULT, "s1", "i", "a", "r", 0, 0.0, 2, None, {}, hidden=True)
    assert await log.append(hidden) is not None  # stored, never delivered: nobody hears it
    await ledger.transition(
        "s1", SessionState.STARTING, expected=frozenset(SessionState), at=110.0, cause="t"
    )
    ended = NewEvent(EventType.ENDED, "s1", "i", "a", "r", 0, 0.0, None, None, {})
    await log.transition_with_event(
        "s1",
        SessionState.ENDED,
        expected=frozenset({SessionState.STARTING}),
        cause="test",
        event=ended,
        updates={"end_reason": EndReason.MAX_DURATION},
    )
    assert heard.heard == [(stored.cursor, None), (stored.cursor + 2, SessionState.ENDED)]
    assert counts.appended == ["llm_result", "ended"]
    assert counts.ended == [("voice", EndReason.MAX_DURATION.value, 30.0)]
    await ledger.close()
