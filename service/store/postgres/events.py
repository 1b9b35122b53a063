"""SQL of the event log on PostgreSQL, and why its cursors are gap-free across replicas.

The problem: a sequence value is taken when a row is inserted, but rows become visible when their
transaction commits. With several writers, transaction A can take cursor 5, transaction B take 6
and commit first; a reader then sees 6 without 5, resumes "after 6", and never sees 5 when A
commits. Every subscriber that resumes by cursor would silently lose events.

The scheme: **appends are serialised, and commit order is cursor order.** Every transaction that
appends events takes ``pg_advisory_xact_lock(EVENT_LOG_LOCK)`` as its first statement, before it
locks any row, and only then draws cursors from the identity sequence. The lock is held until
commit (or rollback), and PostgreSQL releases a transaction's locks only after its commit is
visible to new snapshots. Hence:

* a transaction holding a cursor c has drawn it after every transaction with a smaller cursor
  committed or rolled back (they held the lock before it), so every cursor < c that will ever
  be visible already is;
* a reader's statement that sees cursor c therefore sees every committed cursor below c, and a
  cursor not yet visible can only ever be larger than everything the reader has seen.

So "events with cursor > N" read at any time never skips an event that commits later. Numbers
can have holes (a rolled-back append, a deduplicated ZEGO retry burn a sequence value), never
gaps in what is delivered. ``head`` is the largest *committed* cursor (or how far the log was
purged), never a cursor still in flight. The cost is one short lock per append transaction, across
the fleet; group commits (``append_events``) take it once for the whole group. Taking it first
keeps the lock order (log lock, then session rows) the same in every transaction: no deadlock.

``tests/store/test_pg_fleet.py`` holds an append open while another replica appends, and shows
the second waits and takes the larger cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import asyncpg

from service.domain.events import Event, EventFilter, EventType, NewEvent
from service.store import _events
from service.store._events import _params
from service.store._rows import dump_labels
from service.store.postgres.db import Conn
from service.store.postgres.query import Params, event_filter_sql

__all__ = [
    "EVENT_LOG_LOCK",
    "append",
    "append_many",
    "attach",
    "bounds",
    "events_after",
    "has_type",
    "lock_log",
    "purge_batch",
    "purge_target",
    "row_count",
]

EVENT_LOG_LOCK = 0x61677477_0003
"""The advisory lock key every appending transaction holds until it commits."""

_COLUMNS = _events._COLUMNS
_INSERT = (
    f"INSERT INTO events ({', '.join(_COLUMNS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))})"
    " ON CONFLICT (instance_id, sequence) WHERE sequence IS NOT NULL DO NOTHING"
    " RETURNING cursor"
)


async def lock_log(conn: Conn) -> None:
    """Take the event log's append lock (the first statement of an appending transaction)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", EVENT_LOG_LOCK)


def _pg_params(event: NewEvent) -> tuple[Any, ...]:
    values = list(_params(event))
    # asyncpg binds by type: an instance id arrives as text (ZEGO may send a JSON number).
    instance = values[1]
    values[1] = None if instance is None else str(instance)
    return tuple(values)


async def append(conn: Conn, event: NewEvent) -> Event | None:
    """Insert ``event`` (the caller holds the log lock); None when (instance, Sequence) is stored."""
    cursor = await conn.fetchval(_INSERT, *_pg_params(event))
    if cursor is None:
        return None
    return Event(**{**event.__dict__, "cursor": int(cursor)})


async def append_many(conn: Conn, events: Sequence[NewEvent]) -> list[Event | None]:
    """``append`` each event in turn, inside the caller's one transaction."""
    return [await append(conn, event) for event in events]


async def attach(conn: Conn, instance_id: str, session_id: str, labels: dict[str, str], owner: str) -> int:
    """Give events that arrived before their session was known that session; returns how many."""
    status = await conn.execute(
        "UPDATE events SET session_id = $1, labels = $2, owner = $3"
        " WHERE instance_id = $4 AND session_id IS NULL",
        session_id,
        dump_labels(labels),
        owner,
        str(instance_id),
    )
    return row_count(status)


async def has_type(conn: Conn, instance_id: str, event_type: EventType) -> bool:
    """Whether an event of this type was logged for the instance."""
    row = await conn.fetchrow(
        "SELECT 1 FROM events WHERE instance_id = $1 AND event_type = $2 LIMIT 1",
        str(instance_id),
        EventType(event_type).value,
    )
    return row is not None


async def bounds(conn: Conn) -> tuple[int, int]:
    """(purged_through, head): head is the newest committed cursor, or how far it was purged."""
    row = await conn.fetchrow(
        "SELECT purged_through, GREATEST(purged_through, COALESCE((SELECT MAX(cursor) FROM events), 0))"
        " FROM event_log_meta WHERE id = 1"
    )
    if row is None:
        return 0, 0
    return int(row[0]), int(row[1])


async def events_after(conn: Conn, after: int, limit: int, flt: EventFilter) -> list[Event]:
    """Matching delivered events with cursor > ``after``, in cursor order."""
    p = Params(after)
    where = event_filter_sql(flt, p)
    sql = f"SELECT * FROM events WHERE cursor > $1 AND {' AND '.join(where)} ORDER BY cursor LIMIT "
    rows = await conn.fetch(sql + p.add(limit), *p.values)
    return [event_from_row(row) for row in rows]


def event_from_row(row: asyncpg.Record) -> Event:
    """An Event from an ``events`` row (labels come back as jsonb text; decoded like SQLite's)."""
    return _events.event_from_row(cast(Any, row))


PURGE_BATCH = 5000
"""Most events one purge transaction deletes, so a purge never holds its row locks (or a long
transaction's snapshot) for the whole backlog."""


async def purge_target(conn: Conn, received_before: float) -> int | None:
    """The newest cursor received before the cut-off: retention deletes through it."""
    through = await conn.fetchval("SELECT MAX(cursor) FROM events WHERE received_at < $1", received_before)
    return None if through is None else int(through)


async def purge_batch(conn: Conn, through: int, batch: int | None = None) -> tuple[int, bool]:
    """Delete the oldest ``batch`` cursors at most, up to ``through``, and remember how far the log
    was purged (in the same transaction); (rows removed, whether ``through`` is reached)."""
    batch = batch or PURGE_BATCH
    oldest = await conn.fetchval("SELECT MIN(cursor) FROM events")
    upto = through if oldest is None else min(through, int(oldest) + batch - 1)
    removed = row_count(await conn.execute("DELETE FROM events WHERE cursor <= $1", upto))
    await conn.execute(
        "UPDATE event_log_meta SET purged_through = GREATEST(purged_through, $1) WHERE id = 1", upto
    )
    return removed, upto >= through


def row_count(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
