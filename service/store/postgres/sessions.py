"""SQL of the session tables on PostgreSQL (the twin of ``service.store._sessions``).

Every function takes a pooled connection and runs inside the caller's transaction where it
writes. Concurrency across replicas (READ COMMITTED):

* **Admission** (``reserve_session``, ``retry_session``) first takes ``pg_advisory_xact_lock``
  on :data:`ADMISSION_LOCK`: one reservation at a time fleet-wide, so the count of slots it reads
  cannot change before its insert commits (COUNT-then-INSERT is unsafe without it). Slots are
  only ever taken under this lock; a slot freed meanwhile makes the count conservative, never
  over the cap. The known-request_id lookup runs under the same lock, so a retry on another
  replica finds the row the first attempt committed.
* **A session's changes** read the row ``FOR UPDATE``: concurrent transitions of one session
  queue on its row lock, and each sees the state the previous one committed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import asyncpg

from service.domain.model import TERMINAL_STATES, NewSession, SessionKind, SessionRecord, SessionState
from service.store import _rows
from service.store._sessions import HOLDING, TERMINAL
from service.store.base import Capacity, ReserveOutcome, StoreError, TransitionConflict
from service.store.postgres.db import Conn
from service.store.postgres.query import Params

__all__ = [
    "ADMISSION_LOCK",
    "admit",
    "capacity",
    "get",
    "insert_pending",
    "lock_admission",
    "owner_usage",
    "record",
    "session",
    "transition",
    "update_row",
]

ADMISSION_LOCK = 0x61677477_0002
"""The advisory lock key every slot-taking transaction holds until it commits."""

_POOL_KINDS = {
    pool: tuple(k.value for k in SessionKind if k.pool == pool) for pool in {k.pool for k in SessionKind}
}
_PENDING = (SessionState.PENDING.value, SessionState.STARTING.value)
_BY_ID = f"{_rows.SESSION_SELECT} WHERE session_id = $1"


def session(row: asyncpg.Record) -> SessionRecord:
    """A SessionRecord from a row; an unreadable row is a StoreError."""
    try:
        return _rows.session_from_row(tuple(row))
    except (ValueError, TypeError, KeyError) as e:
        raise StoreError(f"unreadable session row {row['session_id']!r}: {e}") from e


async def get(conn: Conn, session_id: str, *, for_update: bool = False) -> SessionRecord | None:
    """One session by id (locked until the transaction ends with ``for_update``)."""
    row = await conn.fetchrow(_BY_ID + (" FOR UPDATE" if for_update else ""), session_id)
    return None if row is None else session(row)


async def lock_admission(conn: Conn) -> None:
    """Serialise slot-taking transactions fleet-wide (released at commit or rollback)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", ADMISSION_LOCK)


async def capacity(conn: Conn, pool: str, limit: int) -> Capacity:
    """Use of one pool; ValueError for an unknown pool (see ``service.store._sessions``)."""
    kinds = _POOL_KINDS.get(pool)
    if kinds is None:
        raise ValueError(f"unknown capacity pool {pool!r}")
    p = Params()
    pending, kind_list = p.many(_PENDING), p.many(kinds)
    terminal, holding = p.many(TERMINAL), p.many(HOLDING)
    row = await conn.fetchrow(
        f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN state IN ({pending}) THEN 1 ELSE 0 END), 0),"
        f" (SELECT COUNT(*) FROM sessions WHERE possible_leak = 1 AND kind IN ({kind_list})"
        f"  AND state IN ({terminal}))"
        f" FROM sessions WHERE kind IN ({kind_list}) AND state IN ({holding})",
        *p.values,
    )
    assert row is not None  # an aggregate always yields a row
    live, suspect = int(row[0]), int(row[2])
    return Capacity(pool=pool, limit=limit, in_use=live + suspect, pending=int(row[1]), suspect=suspect)


async def record(
    conn: Conn,
    session_id: str,
    from_state: SessionState | None,
    to_state: SessionState,
    at: float,
    cause: str,
    detail: str,
) -> None:
    """Record one state change."""
    await conn.execute(
        "INSERT INTO session_transitions (session_id, from_state, to_state, at, cause, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        session_id,
        None if from_state is None else from_state.value,
        to_state.value,
        float(at),
        cause,
        detail,
    )


async def update_row(conn: Conn, current: SessionRecord, columns: Mapping[str, Any]) -> SessionRecord:
    """Apply ``columns`` and bump the version, guarded by the state and version just read."""
    p = Params()
    sets = ", ".join(f"{c} = {p.add(v)}" for c, v in columns.items())
    ident, state, version = p.add(current.session_id), p.add(current.state.value), p.add(current.version)
    rows = await conn.fetch(
        f"UPDATE sessions SET {sets}, version = version + 1"
        f" WHERE session_id = {ident} AND state = {state} AND version = {version}"
        f" RETURNING {', '.join(_rows.SESSION_COLUMNS)}",
        *p.values,
    )
    updated = [session(row) for row in rows]
    if len(updated) != 1:  # the row was read FOR UPDATE: cannot happen; never write blind
        raise TransitionConflict(await get(conn, current.session_id))
    return updated[0]


async def transition(
    conn: Conn,
    session_id: str,
    to_state: SessionState,
    expected: frozenset[SessionState],
    at: float,
    cause: str,
    detail: str,
    columns: dict[str, Any],
) -> SessionRecord:
    """Move the session from one of ``expected`` to ``to_state`` (TransitionConflict if not)."""
    current = await get(conn, session_id, for_update=True)
    if current is None or current.state not in expected:
        raise TransitionConflict(current)
    columns |= {"state": to_state.value, "updated_at": at}
    if to_state is SessionState.ACTIVE and current.started_at is None:
        columns.setdefault("started_at", at)
    if to_state in TERMINAL_STATES and current.ended_at is None:
        columns.setdefault("ended_at", at)
    updated = await update_row(conn, current, columns)
    await record(conn, session_id, current.state, to_state, at, cause, detail)
    return updated


async def owner_usage(conn: Conn, owner: str) -> dict[str, int]:
    """Slots each pool has in use for ``owner``."""
    p = Params(owner)
    rows = await conn.fetch(
        f"SELECT kind, COUNT(*) FROM sessions WHERE owner = $1 AND state IN ({p.many(HOLDING)})"
        " GROUP BY kind",
        *p.values,
    )
    usage: dict[str, int] = {}
    for kind, count in rows:
        pool = SessionKind(kind).pool
        usage[pool] = usage.get(pool, 0) + int(count)
    return usage


async def admit(
    conn: Conn, new: NewSession, limit: int, owner_limit: int | None
) -> tuple[Capacity, ReserveOutcome | None]:
    """The pool's use, and the refusal when there is no slot for ``new`` (None: insert it).
    The caller holds the admission lock."""
    pool = SessionKind(new.kind).pool
    used = await capacity(conn, pool, limit)
    if used.in_use >= limit:
        return used, ReserveOutcome(session=None, created=False, capacity=used)
    if owner_limit is not None:
        owned = (await owner_usage(conn, new.owner)).get(pool, 0)
        if owned >= owner_limit:
            return used, ReserveOutcome(None, False, used, owner_in_use=owned, over_quota=True)
    return used, None


async def insert_pending(conn: Conn, new: NewSession, used: Capacity) -> ReserveOutcome:
    """Insert ``new`` as a PENDING row with its first transition; the outcome with one more slot."""
    params = _rows.new_session_params(new, SessionState.PENDING)
    p = Params()
    marks = ", ".join(p.add(v) for v in params.values())
    row = await conn.fetchrow(
        f"INSERT INTO sessions ({', '.join(params)}) VALUES ({marks})"
        f" RETURNING {', '.join(_rows.SESSION_COLUMNS)}",
        *p.values,
    )
    assert row is not None
    await record(conn, new.session_id, None, SessionState.PENDING, new.created_at, "create", "")
    grown = dataclasses.replace(used, in_use=used.in_use + 1, pending=used.pending + 1)
    return ReserveOutcome(session=session(row), created=True, capacity=grown)
