"""Per-turn latency across replicas, in the domain: every tracker sees every event, one records."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from service.domain.event_log import EventBus, EventLog
from service.domain.events import Event, EventFilter, EventType, NewEvent
from service.domain.latency import LatencyTracker
from service.domain.model import NewSession, SessionKind
from service.domain.shared_turns import SharedTurnStarts, tracker_feed, turn_start_of, turn_started_event
from service.store.sqlite import SqliteLedger
from tests.domain.test_latency import Recorder

SID = "s1"
_cursors = itertools.count(1)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SqliteLedger]:
    store = SqliteLedger(tmp_path / "l.db")
    await store.open()
    new = NewSession(
        SID, SessionKind.VOICE, "a", "u", "r", "au", "as", "us", {"team": "x"}, 60, None, None, 0.0
    )
    await store.reserve_session(new, 10)
    yield store
    await store.close()


def _event(kind: EventType, round_: int, at_ms: int, **data: Any) -> Event:
    return Event(kind, SID, "i1", "a", "r", at_ms, at_ms / 1000, None, round_, data, cursor=next(_cursors))


async def test_turn_start_events_round_trip(ledger: SqliteLedger) -> None:
    record = await ledger.get_session(SID)
    assert record is not None
    new = turn_started_event(record, "speak", 7, 100.25)
    assert new.hidden and new.labels == {"team": "x"}
    assert turn_start_of(Event(**new.__dict__, cursor=1)) == (SID, "speak", 7, 100.25)
    assert turn_start_of(_event(EventType.AGENT_STATUS, 7, 1, status="TURN_STARTED")) is None  # not hidden
    assert turn_start_of(replace(_event(EventType.AGENT_STATUS, 7, 1, status="IDLE"), hidden=True)) is None


async def test_every_replica_tracks_and_only_the_holder_records(ledger: SqliteLedger) -> None:
    holder = {"a": True}
    rec_a, rec_b = Recorder(), Recorder()
    log = EventLog(ledger, EventBus(), publish=False)
    a = LatencyTracker(ledger, log, rec_a, clock=lambda: 1.0, recording=lambda: holder["a"])
    b = LatencyTracker(ledger, log, rec_b, clock=lambda: 1.0, recording=lambda: not holder["a"])
    feeds = [tracker_feed(a.on_event, a.api_turn), tracker_feed(b.on_event, b.api_turn)]
    record = await ledger.get_session(SID)
    assert record is not None

    def deliver(*events: Event) -> None:
        for event in events:
            for feed in feeds:
                feed(event)

    async with a, b:
        # An RPC turn started on one replica, its SPEAKING arrived on another: both see both.
        start = Event(**turn_started_event(record, "send_text", 3, 100.0).__dict__, cursor=next(_cursors))
        deliver(start, _event(EventType.AGENT_STATUS, 3, 100_700, status="SPEAKING"))
        # A user turn whose SPEAK_END the holder saw before the lease moved, and SPEAKING after.
        deliver(_event(EventType.USER_SPEECH, 4, 200_000, action="SPEAK_END"))
        await a.drain()
        await b.drain()
        holder["a"] = False
        deliver(_event(EventType.AGENT_STATUS, 4, 202_000, status="SPEAKING"))
        await a.drain()
        await b.drain()
    assert rec_a.turns == [("voice", "send_text", 0.7, False)]
    assert rec_b.turns == [("voice", "user_speech", 2.0, True)]  # the new holder knew the turn
    view = await ledger.session_view(SID)
    assert view is not None and view[2].turns == 2  # each turn recorded once
    breaches = await ledger.events_after(
        0, 10, EventFilter(event_types=frozenset({EventType.LATENCY_BUDGET_EXCEEDED}))
    )
    assert [e.round for e in breaches] == [4]


async def test_shared_turn_starts_are_logged_hidden_and_not_published(ledger: SqliteLedger) -> None:
    appended: list[NewEvent] = []

    class Log:
        async def append(self, event: NewEvent) -> Event | None:
            appended.append(event)
            return Event(**event.__dict__, cursor=99)

    starts = SharedTurnStarts(ledger, Log())
    starts.api_turn(SID, "speak", 5, 50.0)
    starts.api_turn("unknown-session", "speak", 6, 50.0)  # nothing to log, nothing raised
    await starts.drain()
    [event] = appended
    assert event.hidden and turn_start_of(Event(**event.__dict__, cursor=1)) == (SID, "speak", 5, 50.0)


async def test_an_event_log_that_does_not_publish_still_stores(ledger: SqliteLedger) -> None:
    async with EventBus() as bus:
        log = EventLog(ledger, bus, publish=False)
        await log.start()
        with bus.subscribe(EventFilter()) as sub:
            stored = await log.append(
                NewEvent(EventType.AGENT_STATUS, SID, "i1", "a", "r", 1, 1.0, 1, 1, {"status": "IDLE"})
            )
            assert stored is not None and stored.cursor == 1
            assert await sub.next(timeout=0.2) is None
        assert [e.cursor for e in await ledger.events_after(0, 10, EventFilter())] == [1]
