"""The ledger's connection: transactions on the loop, the checkpointer thread, group commit."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import sqlite3
from collections.abc import AsyncIterator

import pytest

from service.domain.events import EventFilter, EventType, NewEvent
from service.store import _events
from service.store._db import Database
from service.store.base import StoreError, UnstorableValue
from service.store.sqlite import SqliteLedger
from tests.backends import LedgerFactory
from tests.store.test_sqlite_ledger import new, reserve

S_ID = "s-0001"


def event(sequence: int | None, instance: str = "i-1") -> NewEvent:
    return NewEvent(
        EventType.LLM_RESULT, S_ID, instance, "agent-a", "room-1", 1, 1.0, sequence, 1, {"n": sequence}
    )


@pytest.fixture
async def ledger(tmp_path: pathlib.Path, make_ledger: LedgerFactory) -> AsyncIterator[SqliteLedger]:
    """The ledger of the test's backend (these tests run on SQLite and PostgreSQL)."""
    store = make_ledger(tmp_path / "ledger.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def sqlite_ledger(tmp_path: pathlib.Path) -> AsyncIterator[SqliteLedger]:
    store = SqliteLedger(tmp_path / "ledger.db")
    await store.open()
    yield store
    await store.close()


async def test_reads_see_every_commit_that_returned(ledger: SqliteLedger) -> None:
    for n in range(1, 51):
        created = await reserve(ledger, new(n))
        assert await ledger.get_session(created.session_id) == created
        assert (await ledger.event_bounds())[1] == n - 1
        await ledger.append_event(event(n))
        assert await ledger.has_event("i-1", EventType.LLM_RESULT)


async def test_group_commit_assigns_cursors_in_order_and_skips_duplicates(ledger: SqliteLedger) -> None:
    first = await ledger.append_events([event(1), event(2), event(1), event(None), event(3)])
    assert first[2] is None  # the repeated (instance, Sequence) is stored once
    cursors = [e.cursor for e in first if e is not None]
    assert cursors == sorted(set(cursors))  # strictly increasing (a skipped duplicate may use one up)
    again = await ledger.append_events([event(3), event(4)])
    assert again[0] is None and again[1] is not None and again[1].cursor > cursors[-1]
    logged = await ledger.events_after(0, 100, _everything())
    assert [e.sequence for e in logged] == [1, 2, None, 3, 4]
    assert [e.cursor for e in logged] == [*cursors, again[1].cursor]


@pytest.mark.parametrize(
    "change",
    [
        {"round": 2**64},  # beyond SQLite's INTEGER
        {"agent_id": "\ud800"},  # a lone surrogate has no UTF-8
        {"data": {"x": float("inf")}},  # JSON's Infinity fails the CHECK (json_valid)
    ],
    ids=["int_beyond_64_bits", "lone_surrogate", "infinity_in_json"],
)
async def test_a_value_sqlite_cannot_hold_is_unstorable_and_stores_nothing(
    ledger: SqliteLedger, change: dict[str, object]
) -> None:
    bad = dataclasses.replace(event(8), **change)  # type: ignore[arg-type]
    with pytest.raises(UnstorableValue):
        await ledger.append_event(bad)
    with pytest.raises(UnstorableValue):  # in a group too, and none of the group is stored
        await ledger.append_events([event(9), bad])
    assert await ledger.events_after(0, 100, _everything()) == []
    assert (await ledger.append_events([event(9)]))[0] is not None  # the ledger goes on


async def test_a_failed_group_stores_none_of_it(ledger: SqliteLedger) -> None:
    bad = event(7)
    object.__setattr__(bad, "event_type", "not-a-type")  # fails inside the transaction
    with pytest.raises(ValueError):
        await ledger.append_events([event(5), event(6), bad])
    assert await ledger.events_after(0, 100, _everything()) == []
    stored = await ledger.append_events([event(5)])
    assert [e.sequence for e in await ledger.events_after(0, 100, _everything())] == [5]
    if isinstance(ledger, SqliteLedger):  # SQLite's AUTOINCREMENT rolls back with the group
        assert [e and e.cursor for e in stored] == [1]


async def test_a_cancelled_caller_does_not_tear_its_transaction(ledger: SqliteLedger) -> None:
    # SQLite: a ledger call has no await inside: cancelled before it starts, nothing is written;
    # once started, it runs to its commit. PostgreSQL: a cancelled call rolls back whole.
    task = asyncio.create_task(ledger.append_events([event(n) for n in range(1, 201)]))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await ledger.events_after(0, 1000, _everything()) == []
    started = asyncio.create_task(ledger.append_events([event(n) for n in range(1, 201)]))
    await asyncio.sleep(0)
    started.cancel()
    await asyncio.gather(started, return_exceptions=True)
    stored = len(await ledger.events_after(0, 1000, _everything()))
    assert stored == 200 if isinstance(ledger, SqliteLedger) else stored in (0, 200)
    again = await ledger.append_events([event(n) for n in range(1, 201)])  # and the ledger goes on
    assert len(await ledger.events_after(0, 1000, _everything())) == 200 and len(again) == 200


async def test_concurrent_writers_are_serialised_without_loss(ledger: SqliteLedger) -> None:
    async def writer(base: int) -> None:
        for n in range(base, base + 25):
            await ledger.append_event(event(n))

    await asyncio.gather(*(writer(1000 * w) for w in range(1, 9)))
    stored = await ledger.events_after(0, 1000, _everything())
    assert len(stored) == 200
    assert [e.cursor for e in stored] == list(range(1, 201))


async def test_the_checkpointer_moves_the_wal_into_the_database(tmp_path: pathlib.Path) -> None:
    store = SqliteLedger(tmp_path / "ledger.db")
    await store.open()
    try:
        for n in range(1, 51):
            await store.append_event(event(n))
        wal = tmp_path / "ledger.db-wal"
        assert wal.stat().st_size > 0
        before = store._db.checkpoints
        store._db.checkpoint_now()
        for _ in range(200):  # bounded: up to 2 s
            if store._db.checkpoints > before:
                break
            await asyncio.sleep(0.01)
        assert store._db.checkpoints > before
        # Copied into the database file: a fresh reader of the file alone sees every event.
        assert raw_count(tmp_path / "ledger.db") == 50
    finally:
        await store.close()


def raw_count(path: pathlib.Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def test_memory_database_lives_in_a_private_file_removed_on_close() -> None:
    db = Database(":memory:")
    db.open(lambda conn: conn.execute("CREATE TABLE t (x)").fetchall())
    directory = db._tempdir
    assert directory is not None and os.path.isdir(directory)
    db.transaction(lambda conn: conn.execute("INSERT INTO t VALUES (1)").rowcount)
    assert db.run(lambda conn: conn.execute("SELECT x FROM t").fetchall()[0][0]) == 1
    db.close()
    assert not os.path.exists(directory)
    with pytest.raises(StoreError, match="not open"):
        db.run(lambda conn: None)
    with pytest.raises(StoreError, match="not open"):
        db.transaction(lambda conn: None)


def test_a_failing_prepare_closes_everything(tmp_path: pathlib.Path) -> None:
    db = Database(tmp_path / "x.db")

    def prepare(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT * FROM missing_table")

    with pytest.raises(StoreError, match="cannot open ledger"):
        db.open(prepare)
    assert not db.is_open and db._checkpointer is None


def _everything() -> EventFilter:
    return EventFilter(event_types=frozenset(EventType))


async def test_start_session_claims_early_events_in_the_same_transaction(ledger: SqliteLedger) -> None:
    from service.domain.model import SessionState

    await reserve(ledger, new(1))
    early = NewEvent(EventType.CREATED, None, "i-9", "agent-a", "room-1", 1, 1.0, 1, None, {})
    await ledger.append_event(early)
    record, created_seen = await ledger.start_session(S_ID, at=5.0, instance_id="i-9")
    assert created_seen and record.state is SessionState.STARTING and record.instance_id == "i-9"
    claimed = await ledger.events_after(0, 10, EventFilter(session_ids=frozenset({S_ID})))
    assert [e.event_type for e in claimed] == [EventType.CREATED]
    # Not PENDING any more: a second start is a conflict and changes nothing.
    from service.store.base import TransitionConflict

    with pytest.raises(TransitionConflict):
        await ledger.start_session(S_ID, at=6.0, instance_id="i-10")
    assert [t.to_state for t in await ledger.transitions(S_ID)] == [
        SessionState.PENDING,
        SessionState.STARTING,
    ]


async def test_start_session_without_early_events(ledger: SqliteLedger) -> None:
    await reserve(ledger, new(1))
    record, created_seen = await ledger.start_session(S_ID, at=5.0, instance_id="i-1")
    assert not created_seen and record.instance_id == "i-1"


async def test_the_created_check_uses_an_index_not_a_scan(sqlite_ledger: SqliteLedger) -> None:
    plan = sqlite_ledger._db.run(
        lambda conn: conn.execute(f"EXPLAIN QUERY PLAN {_events.HAS_TYPE}", ("i-1", "created")).fetchall()
    )
    details = " ".join(str(row[3]) for row in plan)
    assert "USING COVERING INDEX events_instance_type" in details, details


async def test_retention_purges_in_batches_and_lets_appends_in_between(
    ledger: SqliteLedger, ledger_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A purge of a long backlog is many short transactions, not one that holds the write lock for
    seconds: ingest goes on between them, and the bounds move with each batch."""
    from service.store.postgres import events as pg_events

    monkeypatch.setattr(_events, "PURGE_BATCH", 4)
    monkeypatch.setattr(pg_events, "PURGE_BATCH", 4)
    old = [dataclasses.replace(event(n), received_at=1.0) for n in range(1, 26)]
    stored = await ledger.append_events(old)
    recent = await ledger.append_events(
        [dataclasses.replace(event(n), received_at=1000.0) for n in range(26, 31)]
    )
    order: list[str] = []

    async def purge() -> int:
        removed = await ledger.purge_events(500.0)
        order.append("purge")
        return removed

    async def append() -> None:
        await asyncio.sleep(0)
        await ledger.append_event(dataclasses.replace(event(99), received_at=1000.0))
        order.append("append")

    removed, _ = await asyncio.gather(purge(), append())
    assert removed == 25
    last_old = stored[-1]
    assert last_old is not None
    purged, _ = await ledger.event_bounds()
    assert purged == last_old.cursor
    left = [e.sequence for e in await ledger.events_after(0, 100, EventFilter())]
    assert left == [e.sequence for e in recent if e is not None] + [99]
    if ledger_backend == "sqlite":  # one thread: the append ran between two batches
        assert order == ["append", "purge"]
    assert await ledger.purge_events(500.0) == 0  # nothing left before the cut-off
