"""The embedded SQLite implementation of the :class:`~service.store.base.Ledger`.

ZEGO cannot list the instances we created, so this file is the only inventory of paid, capped
resources. Everything here favours not losing or tearing data over speed:

* WAL mode, one connection used on the event loop, checkpoints on a thread of their own
  (``service.store._db`` says why, with the measurements).
* Every mutating method is one function run as one ``BEGIN IMMEDIATE`` ... ``COMMIT``
  transaction, so it takes the write lock up front and a check (capacity, expected state) cannot
  be invalidated before its write. It runs whole, with no await inside: transactions never
  interleave and a cancelled caller cannot stop one halfway.
* sqlite3 errors surface as :class:`StoreError` with the original as ``__cause__``.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from service.domain.events import Event, EventType, NewEvent
from service.domain.model import (
    IdempotencyRecord,
    NewSession,
    SessionFilter,
    SessionKind,
    SessionRecord,
    SessionState,
    Transition,
)
from service.store import _events, _rows
from service.store import _sessions as _sql
from service.store._db import Database, fetch_all, fetch_one
from service.store._query import list_sessions_query, marks
from service.store.base import Capacity, DuplicateEvent, ReserveOutcome, StoreError, TransitionConflict
from service.store.migrations import migrate
from service.store.sqlite_events import EventLogMixin
from service.store.sqlite_identity import IdentityMixin
from service.store.sqlite_leaks import LeakMixin

__all__ = ["SqliteLedger"]

log = logging.getLogger(__name__)

_IDEMPOTENCY_SELECT = "SELECT * FROM idempotency_keys WHERE method = ? AND request_id = ?"


class SqliteLedger(EventLogMixin, IdentityMixin, LeakMixin):
    """A :class:`~service.store.base.Ledger` in one SQLite file (or ``":memory:"`` for tests)."""

    def __init__(self, path: pathlib.Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._db = Database(path)

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the database, creating it and its parent directories, and apply pending migrations.

        Raises:
            StoreError: the file cannot be opened, is not a database, fails to migrate, or has a
                schema newer than this code knows.
        """
        self._db.open(lambda conn: migrate(conn, name=self._db.name, clock=self._clock))

    async def close(self) -> None:
        """Stop the checkpointer and close (the last close checkpoints the WAL)."""
        self._db.close()

    # -- sessions -------------------------------------------------------------------------------

    async def reserve_session(
        self, new: NewSession, limit: int, owner_limit: int | None = None
    ) -> ReserveOutcome:
        """Return the row of a known request_id, else insert a PENDING row if the pool has a slot
        and, with ``owner_limit``, the owner has fewer than that many of the pool's slots."""
        pool = SessionKind(new.kind).pool

        def reserve(conn: sqlite3.Connection) -> ReserveOutcome:
            if new.request_id is not None:
                row = fetch_one(conn, f"{_rows.SESSION_SELECT} WHERE request_id = ?", (new.request_id,))
                if row is not None:
                    capacity = _sql.capacity(conn, pool, limit)
                    return ReserveOutcome(session=_sql.session(row), created=False, capacity=capacity)
            used, refused = _sql.admit(conn, new, limit, owner_limit)
            return refused or _sql.insert_pending(conn, new, used)

        return self._db.transaction(reserve)

    async def transition(
        self,
        session_id: str,
        to_state: SessionState,
        *,
        expected: frozenset[SessionState],
        at: float,
        cause: str,
        detail: str = "",
        updates: Mapping[str, Any] | None = None,
    ) -> SessionRecord:
        """Move a session from one of ``expected`` to ``to_state`` and record the transition.

        Sets ``started_at`` on entering ACTIVE and ``ended_at`` on entering ENDED or FAILED when
        they are unset and not given in ``updates``.

        Raises:
            ValueError: ``updates`` names an unknown or store-managed field.
            TransitionConflict: the session is missing or not in an expected state.
        """
        columns = _rows.encode_updates(updates or {})
        state = SessionState(to_state)
        return self._db.transaction(
            lambda conn: _sql.transition(conn, session_id, state, expected, at, cause, detail, columns)
        )

    async def start_session(
        self, session_id: str, *, at: float, instance_id: str, updates: Mapping[str, Any] | None = None
    ) -> tuple[SessionRecord, bool]:
        """PENDING -> STARTING, claim the instance's early events, and say whether it was created.

        One transaction (see ``Ledger.start_session``).
        """
        columns = _rows.encode_updates({**(updates or {}), "instance_id": instance_id})
        pending = frozenset({SessionState.PENDING})

        def start(conn: sqlite3.Connection) -> tuple[SessionRecord, bool]:
            record = _sql.transition(
                conn, session_id, SessionState.STARTING, pending, at, "zego_created", "", columns
            )
            _events.attach(conn, instance_id, session_id, record.labels, record.owner)
            return record, _events.has_type(conn, instance_id, EventType.CREATED)

        return self._db.transaction(start)

    async def transition_with_event(
        self,
        session_id: str,
        to_state: SessionState,
        *,
        expected: frozenset[SessionState],
        at: float,
        cause: str,
        event: NewEvent,
        detail: str = "",
        updates: Mapping[str, Any] | None = None,
    ) -> tuple[SessionRecord, Event]:
        """``transition`` and append ``event`` in one transaction: both happen, or neither.

        This is how a session's single terminal event is written together with its end.
        """
        columns = _rows.encode_updates(updates or {})
        state = SessionState(to_state)

        def both(conn: sqlite3.Connection) -> tuple[SessionRecord, Event]:
            record = _sql.transition(conn, session_id, state, expected, at, cause, detail, columns)
            appended = _events.append(conn, event)
            if appended is None:
                raise DuplicateEvent(f"event for {session_id!r} was already stored")
            return record, appended

        return self._db.transaction(both)

    async def update_session(self, session_id: str, updates: Mapping[str, Any], at: float) -> SessionRecord:
        """Change fields without a state change; bumps the version but records no transition.

        Raises:
            ValueError: ``updates`` names an unknown or store-managed field.
            TransitionConflict: the session is missing (``current`` is None).
        """
        columns = {**_rows.encode_updates(updates), "updated_at": at}

        def update(conn: sqlite3.Connection) -> SessionRecord:
            current = _sql.get(conn, session_id)
            if current is None:
                raise TransitionConflict(None)
            return _sql.update_row(conn, current, columns)

        return self._db.transaction(update)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """One session by id."""
        return self._db.run(lambda conn: _sql.get(conn, session_id))

    async def find_by_instance_id(self, instance_id: str) -> SessionRecord | None:
        """The session of a ZEGO AgentInstanceId (the newest, should ZEGO ever reuse one)."""
        row = self._db.run(
            lambda conn: fetch_one(
                conn,
                f"{_rows.SESSION_SELECT} WHERE instance_id = ?"
                " ORDER BY created_at DESC, session_id DESC LIMIT 1",
                (str(instance_id),),
            )
        )
        return None if row is None else _sql.session(row)

    async def find_by_agent_user(self, room_id: str, agent_user_id: str) -> SessionRecord | None:
        """The newest session with these generated ids."""
        row = self._db.run(
            lambda conn: fetch_one(
                conn,
                f"{_rows.SESSION_SELECT} WHERE room_id = ? AND agent_user_id = ?"
                " ORDER BY created_at DESC, session_id DESC LIMIT 1",
                (room_id, agent_user_id),
            )
        )
        return None if row is None else _sql.session(row)

    async def list_sessions(
        self, flt: SessionFilter, limit: int, after: tuple[float, str] | None
    ) -> list[SessionRecord]:
        """Newest first by (created_at, session_id); ``after`` is the last key of the previous page."""
        if limit <= 0:
            return []
        sql, params = list_sessions_query(flt, limit, after)
        rows = self._db.run(lambda conn: fetch_all(conn, sql, params))
        return [_sql.session(row) for row in rows]

    async def sessions_in_states(self, states: frozenset[SessionState]) -> list[SessionRecord]:
        """Every session in one of these states, oldest first."""
        if not states:
            return []
        values = sorted(SessionState(s).value for s in states)
        sql = f"{_rows.SESSION_SELECT} WHERE state IN ({marks(values)}) ORDER BY created_at, session_id"
        rows = self._db.run(lambda conn: fetch_all(conn, sql, values))
        return [_sql.session(row) for row in rows]

    async def transitions(self, session_id: str) -> list[Transition]:
        """A session's recorded transitions, in commit order."""
        rows = self._db.run(
            lambda conn: fetch_all(
                conn, "SELECT * FROM session_transitions WHERE session_id = ? ORDER BY id", (session_id,)
            )
        )
        try:
            return [_rows.transition_from_row(row) for row in rows]
        except ValueError as e:
            raise StoreError(f"unreadable transition of {session_id!r}: {e}") from e

    async def capacity(self, pool: str, limit: int) -> Capacity:
        """Current use of one pool ("voice" or "digital_human"); ValueError for another name."""
        return self._db.run(lambda conn: _sql.capacity(conn, pool, limit))

    async def count_by_kind_state(self) -> dict[tuple[SessionKind, SessionState], int]:
        """Sessions per (kind, state); combinations without sessions are absent."""
        rows = self._db.run(
            lambda conn: fetch_all(conn, "SELECT kind, state, COUNT(*) FROM sessions GROUP BY kind, state")
        )
        try:
            return {(SessionKind(r[0]), SessionState(r[1])): int(r[2]) for r in rows}
        except ValueError as e:
            raise StoreError(f"unreadable session kind or state: {e}") from e

    # -- idempotency and retention --------------------------------------------------------------

    async def get_idempotent(self, method: str, request_id: str) -> IdempotencyRecord | None:
        """A stored result of a mutating call."""
        row = self._db.run(lambda conn: fetch_one(conn, _IDEMPOTENCY_SELECT, (method, request_id)))
        return None if row is None else _rows.idempotency_from_row(row)

    async def put_idempotent(self, record: IdempotencyRecord) -> IdempotencyRecord:
        """Store a result unless one exists for (method, request_id); return the stored one."""

        def put(conn: sqlite3.Connection) -> IdempotencyRecord:
            conn.execute(
                "INSERT INTO idempotency_keys (method, request_id, request_hash, response, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (method, request_id) DO NOTHING",
                dataclasses.astuple(record),
            )
            row = fetch_one(conn, _IDEMPOTENCY_SELECT, (record.method, record.request_id))
            assert row is not None  # inserted or already there, in this transaction
            return _rows.idempotency_from_row(row)

        return self._db.transaction(put)

    async def purge(self, *, idempotency_before: float, sessions_ended_before: float) -> int:
        """Delete old idempotency keys and terminal sessions with their transitions.

        Returns the rows removed from all three tables. Transitions are deleted explicitly
        rather than by ON DELETE CASCADE because cascaded rows are not counted.
        """
        doomed = f"state IN ({marks(_sql.TERMINAL)}) AND ended_at < ?"
        doomed_params = (*_sql.TERMINAL, sessions_ended_before)

        def purge(conn: sqlite3.Connection) -> int:
            keys = conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?", (idempotency_before,)
            ).rowcount
            transitions = conn.execute(
                "DELETE FROM session_transitions"
                f" WHERE session_id IN (SELECT session_id FROM sessions WHERE {doomed})",
                doomed_params,
            ).rowcount
            sessions = conn.execute(f"DELETE FROM sessions WHERE {doomed}", doomed_params).rowcount
            return int(keys + transitions + sessions)

        return self._db.transaction(purge)
