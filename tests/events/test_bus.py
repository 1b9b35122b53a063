"""EventBus and EventLog in isolation: ordering, filtering, overflow."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.domain.event_log import EventBus, EventLog
from service.domain.events import Event, EventFilter, EventType, NewEvent
from service.domain.model import LabelOp, LabelRequirement
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
    bus = EventBus(queue_size=3, observer=observer)
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
    bus = EventBus(queue_size=1000)
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
    bus = EventBus(queue_size=10)
    sub = bus.subscribe(EventFilter())
    assert sub.take_ready(5) == []  # nothing queued: returns at once
    sub.tick()  # a heartbeat tick in the idle queue, then a burst of events behind it
    for cursor in range(1, 5):
        bus.publish(event(cursor))
    assert [e.cursor for e in sub.take_ready(3)] == [1, 2, 3]  # the tick is dropped, the limit kept
    assert [e.cursor for e in sub.take_ready(3)] == [4]
    assert sub.queue.empty()
    sub.close()
    small = EventBus(queue_size=2)
    full = small.subscribe(EventFilter())
    for cursor in range(1, 4):
        small.publish(event(cursor))
    assert full.overflowed and full.take_ready(5) == []  # an overflowed subscriber gets nothing more
