"""SQL of the session event log (table ``events``), kept apart from the session store.

Every function takes the ledger's open ``sqlite3`` connection and runs synchronously, inside
the caller's transaction where it writes (see ``service.store._db``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from service.domain.events import Event, EventFilter, EventType, NewEvent
from service.store._query import label_clause, marks
from service.store._rows import dump_labels

__all__ = [
    "append",
    "append_many",
    "attach",
    "bounds",
    "event_from_row",
    "events_after",
    "has_type",
    "purge_batch",
    "purge_target",
]

_COLUMNS = (
    "session_id",
    "instance_id",
    "agent_id",
    "room_id",
    "agent_user_id",
    "event_type",
    "event_time_ms",
    "received_at",
    "sequence",
    "round",
    "labels",
    "data",
    "raw",
    "hidden",
    "owner",
    "trace_id",
)
_INSERT = (
    f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({marks(_COLUMNS)})"
    # A ZEGO retry of a stored (instance, Sequence) is a no-op: ZEGO gets its 2xx, we keep one.
    " ON CONFLICT (instance_id, sequence) WHERE sequence IS NOT NULL DO NOTHING"
    " RETURNING cursor"
)


def _params(event: NewEvent) -> tuple[Any, ...]:
    return (
        event.session_id,
        event.instance_id,
        event.agent_id,
        event.room_id,
        event.agent_user_id,
        EventType(event.event_type).value,
        int(event.event_time_ms),
        float(event.received_at),
        event.sequence,
        event.round,
        dump_labels(event.labels),
        json.dumps(event.data, separators=(",", ":"), ensure_ascii=False),
        event.raw,
        1 if event.hidden else 0,
        event.owner,
        event.trace_id,
    )


_TYPES = {t.value: t for t in EventType}


def event_from_row(row: sqlite3.Row) -> Event:
    """An Event from an ``events`` row; never raises for what the row holds.

    A row that cannot be read (an unknown type, data that is not a JSON object, a mistyped column:
    written by a newer release, or damaged) comes back with ``unreadable`` set, so one bad row
    cannot fail a whole page, a resume or a stream.
    """
    try:
        return _decode(row)
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        return _unreadable(row, f"{type(e).__name__}: {e}"[:300])


def _decode(row: sqlite3.Row) -> Event:
    labels, data = json.loads(row["labels"]), json.loads(row["data"])
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError("labels are not an object of strings")
    if not isinstance(data, dict):
        raise ValueError("data is not a JSON object")
    event_time_ms, received_at = row["event_time_ms"], row["received_at"]
    if not isinstance(event_time_ms, int) or not isinstance(received_at, int | float):
        raise TypeError("event_time_ms or received_at is not a number")
    sequence, round_ = row["sequence"], row["round"]
    if not isinstance(sequence, int | None) or not isinstance(round_, int | None):
        raise TypeError("sequence or round is not an integer")
    return Event(
        cursor=row["cursor"],
        event_type=_TYPES[row["event_type"]],
        session_id=row["session_id"],
        instance_id=row["instance_id"],
        agent_id=row["agent_id"],
        room_id=row["room_id"],
        agent_user_id=row["agent_user_id"],
        event_time_ms=event_time_ms,
        received_at=float(received_at),
        sequence=sequence,
        round=round_,
        labels=labels,
        data=data,
        raw=row["raw"],
        hidden=bool(row["hidden"]),
        owner=row["owner"],
        trace_id=row["trace_id"],
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _unreadable(row: sqlite3.Row, reason: str) -> Event:
    """What can be read safely of a bad row: its cursor and its text columns, nothing else."""
    stored_type = row["event_type"]
    stored = stored_type if isinstance(stored_type, str) else repr(stored_type)
    received_at = row["received_at"]
    return Event(
        cursor=int(row["cursor"]),
        event_type=_TYPES.get(stored, EventType.EXCEPTION),
        session_id=_text(row["session_id"]) or None,
        instance_id=_text(row["instance_id"]) or None,
        agent_id=_text(row["agent_id"]),
        room_id=_text(row["room_id"]),
        agent_user_id=_text(row["agent_user_id"]),
        event_time_ms=0,
        received_at=float(received_at) if isinstance(received_at, int | float) else 0.0,
        sequence=None,
        round=None,
        data={"stored_type": stored[:100]},
        raw=row["raw"] if isinstance(row["raw"], str) else None,
        unreadable=reason,
    )


def append(conn: sqlite3.Connection, event: NewEvent) -> Event | None:
    """Insert ``event``; None when (instance, Sequence) is already stored."""
    rows = conn.execute(_INSERT, _params(event)).fetchall()  # fetchall: RETURNING must run to its end
    if not rows:
        return None
    return Event(**{**event.__dict__, "cursor": int(rows[0][0])})


def append_many(conn: sqlite3.Connection, events: Sequence[NewEvent]) -> list[Event | None]:
    """``append`` each event in turn (inside the caller's one transaction: a group commit)."""
    return [append(conn, event) for event in events]


def attach(
    conn: sqlite3.Connection, instance_id: str, session_id: str, labels: dict[str, str], owner: str = ""
) -> int:
    """Give events that arrived before their session was known that session; returns how many."""
    cursor = conn.execute(
        "UPDATE events SET session_id = ?, labels = ?, owner = ?"
        " WHERE instance_id = ? AND session_id IS NULL",
        (session_id, dump_labels(labels), owner, instance_id),
    )
    return int(cursor.rowcount)


HAS_TYPE = "SELECT 1 FROM events WHERE instance_id = ? AND event_type = ? LIMIT 1"
"""Whether an instance has an event of a type (index ``events_instance_type``, migration 4)."""


def has_type(conn: sqlite3.Connection, instance_id: str, event_type: EventType) -> bool:
    """Whether an event of this type was logged for the instance."""
    return bool(
        conn.execute(
            HAS_TYPE,
            (instance_id, EventType(event_type).value),
        ).fetchall()
    )


def bounds(conn: sqlite3.Connection) -> tuple[int, int]:
    """(purged_through, head): resumable cursors are those >= purged_through and <= head."""
    rows = conn.execute(
        "SELECT (SELECT purged_through FROM event_log_meta WHERE id = 1),"
        " (SELECT seq FROM sqlite_sequence WHERE name = 'events')"
    ).fetchall()
    purged, head = rows[0] if rows else (0, 0)
    return int(purged or 0), int(head or 0)


def _filter_sql(flt: EventFilter) -> tuple[list[str], list[Any]]:
    where = ["hidden = 0"]
    params: list[Any] = []
    if flt.owner is not None:
        where.append("owner = ?")
        params.append(flt.owner)
    if flt.session_ids:
        ids = sorted(flt.session_ids)
        where.append(f"session_id IN ({marks(ids)})")
        params += ids
    if flt.agent_id:
        where.append("agent_id = ?")
        params.append(flt.agent_id)
    if flt.room_id:
        where.append("room_id = ?")
        params.append(flt.room_id)
    if flt.event_types:
        types = sorted(EventType(t).value for t in flt.event_types)
        where.append(f"event_type IN ({marks(types)})")
        params += types
    else:
        where.append("event_type != ?")
        params.append(EventType.USER_AUDIO.value)
    for req in flt.label_selector:
        clause, clause_params = label_clause(req, table="events")
        where.append(clause)
        params += clause_params
    return where, params


def events_after(conn: sqlite3.Connection, after: int, limit: int, flt: EventFilter) -> list[Event]:
    """Matching delivered events with cursor > ``after``, in cursor order."""
    where, params = _filter_sql(flt)
    sql = f"SELECT * FROM events WHERE cursor > ? AND {' AND '.join(where)} ORDER BY cursor LIMIT ?"
    rows = conn.execute(sql, (after, *params, limit)).fetchall()
    return [event_from_row(row) for row in rows]


PURGE_BATCH = 1000
"""Most events one purge transaction deletes: the write lock is held for one batch at a time, so
ingest waits milliseconds, not the length of the whole purge."""


def purge_target(conn: sqlite3.Connection, received_before: float) -> int | None:
    """The newest cursor received before the cut-off: retention deletes through it."""
    (through,) = conn.execute(
        "SELECT MAX(cursor) FROM events WHERE received_at < ?", (received_before,)
    ).fetchall()[0]
    return None if through is None else int(through)


def purge_batch(conn: sqlite3.Connection, through: int, batch: int | None = None) -> tuple[int, bool]:
    """Delete the oldest ``batch`` cursors at most, up to ``through``, and remember how far the log
    was purged (in the same transaction); (rows removed, whether ``through`` is reached)."""
    batch = batch or PURGE_BATCH
    (oldest,) = conn.execute("SELECT MIN(cursor) FROM events").fetchall()[0]
    upto = through if oldest is None else min(through, int(oldest) + batch - 1)
    removed = int(conn.execute("DELETE FROM events WHERE cursor <= ?", (upto,)).rowcount)
    conn.execute("UPDATE event_log_meta SET purged_through = MAX(purged_through, ?) WHERE id = 1", (upto,))
    return removed, upto >= through
