"""EventLog.append's group commit: concurrent appends share transactions, lose nothing, keep order,
and one bad event fails only its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from service.domain.event_log import APPEND_GROUP_MAX, EventBus, EventLog
from service.domain.events import Event, EventFilter, EventType, NewEvent
from service.store.base import StoreError
from tests.backends import LedgerFactory


def event(sequence: int, text: str = "") -> NewEvent:
    return NewEvent(EventType.LLM_RESULT, None, "i", "a", "r", 0, 0.0, sequence, None, {"text": text})


class CountingLedger:
    """A ledger of the test's backend that counts group transactions and can be told to fail on
    one event's text."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.groups: list[int] = []
        self.poison = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def append_events(self, events: Sequence[NewEvent]) -> list[Event | None]:
        self.groups.append(len(events))
        if any(e.data.get("text") == self.poison for e in events):
            raise StoreError("ledger transaction failed: poisoned")
        return await self._inner.append_events(events)

    async def append_event(self, event: NewEvent) -> Event | None:
        if self.poison and event.data.get("text") == self.poison:
            raise StoreError("ledger transaction failed: poisoned")
        return await self._inner.append_event(event)


@pytest.fixture
async def ledger(tmp_path: Path, make_ledger: LedgerFactory) -> AsyncIterator[CountingLedger]:
    store = CountingLedger(make_ledger(tmp_path / "l.db"))
    await store.open()
    yield store
    await store.close()


async def test_concurrent_appends_share_transactions(ledger: CountingLedger) -> None:
    bus = EventBus(queue_size=1000)
    log = EventLog(ledger, bus)
    await log.start()
    with bus.subscribe(EventFilter()) as sub:
        results = await asyncio.gather(*(log.append(event(i, str(i))) for i in range(300)))
        published = []
        while (got := await sub.next(0.01)) is not None:
            published.append(got)
    assert all(r is not None for r in results)
    assert sum(ledger.groups) == 300
    assert len(ledger.groups) < 300 and max(ledger.groups) <= APPEND_GROUP_MAX
    assert [e.cursor for e in published] == sorted(r.cursor for r in results if r is not None)
    # Each caller got its own event back.
    assert [r.data["text"] for r in results if r is not None] == [str(i) for i in range(300)]


async def test_one_bad_event_fails_only_its_caller(ledger: CountingLedger) -> None:
    log = EventLog(ledger, EventBus())
    await log.start()
    ledger.poison = "bad"
    results = await asyncio.gather(
        *(log.append(event(i, "bad" if i == 5 else str(i))) for i in range(20)), return_exceptions=True
    )
    assert isinstance(results[5], StoreError)
    stored = await ledger.events_after(0, 100, EventFilter())
    assert sorted(e.sequence or 0 for e in stored) == [i for i in range(20) if i != 5]


async def test_a_caller_that_stops_waiting_still_has_its_event_stored(ledger: CountingLedger) -> None:
    bus = EventBus()
    log = EventLog(ledger, bus)
    await log.start()
    with bus.subscribe(EventFilter()) as sub:
        task = asyncio.ensure_future(log.append(event(1, "kept")))
        await asyncio.sleep(0)
        task.cancel()
        got = await sub.next(2.0)
    assert got is not None and got.data["text"] == "kept"
    assert task.cancelled()
