"""SQL of the session tables (``sessions``, ``session_transitions``), kept apart from the ledger.

Every function takes the ledger's open ``sqlite3`` connection and runs synchronously, inside
the caller's transaction where it writes (see ``service.store._db``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping
from typing import Any

from service.domain.model import TERMINAL_STATES, NewSession, SessionKind, SessionRecord, SessionState
from service.store import _rows
from service.store._db import fetch_all, fetch_one
from service.store._query import marks
from service.store.base import Capacity, ReserveOutcome, StoreError, TransitionConflict

__all__ = [
    "HOLDING",
    "TERMINAL",
    "admit",
    "capacity",
    "get",
    "insert_pending",
    "owner_usage",
    "record",
    "session",
    "transition",
    "update_row",
]

_POOL_KINDS = {
    pool: tuple(k.value for k in SessionKind if k.pool == pool) for pool in {k.pool for k in SessionKind}
}

HOLDING = tuple(s.value for s in SessionState if s not in TERMINAL_STATES)
_PENDING = (SessionState.PENDING.value, SessionState.STARTING.value)
TERMINAL = tuple(s.value for s in TERMINAL_STATES)

_BY_ID = f"{_rows.SESSION_SELECT} WHERE session_id = ?"


def session(row: sqlite3.Row) -> SessionRecord:
    """A SessionRecord from a row; an unreadable row is a StoreError."""
    try:
        return _rows.session_from_row(row)
    except (ValueError, TypeError, KeyError) as e:
        raise StoreError(f"unreadable session row {row['session_id']!r}: {e}") from e


def get(conn: sqlite3.Connection, session_id: str) -> SessionRecord | None:
    """One session by id."""
    row = fetch_one(conn, _BY_ID, (session_id,))
    return None if row is None else session(row)


def capacity(conn: sqlite3.Connection, pool: str, limit: int) -> Capacity:
    """Use of one pool; ValueError for an unknown pool.

    A slot is held by every non-terminal row and by every terminal row still flagged
    ``possible_leak`` (its instance may run at ZEGO until ZEGO confirms it gone): ``suspect``.
    """
    kinds = _POOL_KINDS.get(pool)
    if kinds is None:
        raise ValueError(f"unknown capacity pool {pool!r}")
    row = fetch_one(
        conn,
        f"SELECT COUNT(*), COALESCE(SUM(state IN ({marks(_PENDING)})), 0),"
        # INDEXED BY: without it the planner walks every ended row of the kind (never purged).
        f" (SELECT COUNT(*) FROM sessions INDEXED BY sessions_possible_leak"
        f"  WHERE possible_leak = 1 AND kind IN ({marks(kinds)})"
        f"  AND state IN ({marks(TERMINAL)}))"
        f" FROM sessions WHERE kind IN ({marks(kinds)}) AND state IN ({marks(HOLDING)})",
        (*_PENDING, *kinds, *TERMINAL, *kinds, *HOLDING),
    )
    assert row is not None  # an aggregate always yields a row
    live, suspect = int(row[0]), int(row[2])
    return Capacity(pool=pool, limit=limit, in_use=live + suspect, pending=int(row[1]), suspect=suspect)


def record(
    conn: sqlite3.Connection,
    session_id: str,
    from_state: SessionState | None,
    to_state: SessionState,
    at: float,
    cause: str,
    detail: str,
) -> None:
    """Record one state change."""
    conn.execute(
        "INSERT INTO session_transitions (session_id, from_state, to_state, at, cause, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (session_id, None if from_state is None else from_state.value, to_state.value, at, cause, detail),
    )


def update_row(conn: sqlite3.Connection, current: SessionRecord, columns: Mapping[str, Any]) -> SessionRecord:
    """Apply ``columns`` and bump the version, guarded by the state and version just read."""
    sets = ", ".join(f"{c} = :{c}" for c in columns)
    rows = fetch_all(
        conn,
        f"UPDATE sessions SET {sets}, version = version + 1"
        " WHERE session_id = :_id AND state = :_state AND version = :_version"
        f" RETURNING {', '.join(_rows.SESSION_COLUMNS)}",
        {
            **columns,
            "_id": current.session_id,
            "_state": current.state.value,
            "_version": current.version,
        },
    )
    updated = [session(row) for row in rows]
    if len(updated) != 1:  # cannot happen under BEGIN IMMEDIATE; never write blind
        raise TransitionConflict(get(conn, current.session_id))
    return updated[0]


def transition(
    conn: sqlite3.Connection,
    session_id: str,
    to_state: SessionState,
    expected: frozenset[SessionState],
    at: float,
    cause: str,
    detail: str,
    columns: dict[str, Any],
) -> SessionRecord:
    """Move the session from one of ``expected`` to ``to_state`` (TransitionConflict if not)."""
    current = get(conn, session_id)
    if current is None or current.state not in expected:
        raise TransitionConflict(current)
    columns |= {"state": to_state.value, "updated_at": at}
    if to_state is SessionState.ACTIVE and current.started_at is None:
        columns.setdefault("started_at", at)
    if to_state in TERMINAL_STATES and current.ended_at is None:
        columns.setdefault("ended_at", at)
    updated = update_row(conn, current, columns)
    record(conn, session_id, current.state, to_state, at, cause, detail)
    return updated


def owner_usage(conn: sqlite3.Connection, owner: str) -> dict[str, int]:
    """Slots each pool has in use for ``owner`` (inside the caller's transaction)."""
    rows = fetch_all(
        conn,
        f"SELECT kind, COUNT(*) FROM sessions WHERE owner = ? AND state IN ({marks(HOLDING)}) GROUP BY kind",
        (owner, *HOLDING),
    )
    usage: dict[str, int] = {}
    for kind, count in rows:
        pool = SessionKind(kind).pool
        usage[pool] = usage.get(pool, 0) + int(count)
    return usage


def admit(
    conn: sqlite3.Connection, new: NewSession, limit: int, owner_limit: int | None
) -> tuple[Capacity, ReserveOutcome | None]:
    """The pool's use, and the refusal when the pool (or, with ``owner_limit``, the owner's quota
    of it) has no slot for ``new``; None when it may be inserted."""
    pool = SessionKind(new.kind).pool
    used = capacity(conn, pool, limit)
    if used.in_use >= limit:
        return used, ReserveOutcome(session=None, created=False, capacity=used)
    if owner_limit is not None:
        owned = owner_usage(conn, new.owner).get(pool, 0)
        if owned >= owner_limit:
            return used, ReserveOutcome(None, False, used, owner_in_use=owned, over_quota=True)
    return used, None


def insert_pending(conn: sqlite3.Connection, new: NewSession, used: Capacity) -> ReserveOutcome:
    """Insert ``new`` as a PENDING row with its first transition; the outcome with one more slot."""
    params = _rows.new_session_params(new, SessionState.PENDING)
    conn.execute(
        f"INSERT INTO sessions ({', '.join(params)}) VALUES ({', '.join(':' + c for c in params)})", params
    )
    record(conn, new.session_id, None, SessionState.PENDING, new.created_at, "create", "")
    grown = dataclasses.replace(used, in_use=used.in_use + 1, pending=used.pending + 1)
    return ReserveOutcome(session=get(conn, new.session_id), created=True, capacity=grown)
