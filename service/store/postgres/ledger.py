"""The PostgreSQL implementation of the :class:`~service.store.base.Ledger`, shared by a fleet.

Several agentgw replicas open one database, each with its own :class:`PostgresLedger` (and pool);
the single-process guarantees of the SQLite ledger hold across all of them:

* **Admission is global**: every slot-taking transaction holds one advisory transaction lock
  while it counts and inserts (``service.store.postgres.sessions``).
* **Idempotency is global**: a request_id is unique in the table, and its lookup runs under the
  same lock, so a retry on another replica returns the row the first attempt committed.
* **Cursors are gap-free**: appends are serialised by an advisory lock, so commit order is cursor
  order (``service.store.postgres.events`` has the argument).
* **One terminal event per session**: the ``events_one_end`` unique index, now shared.
* **Replay protection is shared**: callback nonces are one table, and each is one upsert.

Every mutating method is one :meth:`PgDatabase.transaction`; reads are single statements.
Migrations run under an advisory lock, so replicas may start together (``migrations_pg``).
"""

from __future__ import annotations

import dataclasses
import logging
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
from service.store import _rows
from service.store._sessions import TERMINAL
from service.store.base import Capacity, DuplicateEvent, ReserveOutcome, StoreError, TransitionConflict
from service.store.migrations_pg import migrate
from service.store.postgres import events as _events
from service.store.postgres import sessions as _sql
from service.store.postgres.db import Conn, PgDatabase, PoolOptions
from service.store.postgres.ledger_events import EventLogMixin
from service.store.postgres.ledger_identity import IdentityMixin, LeakMixin
from service.store.postgres.query import Params, list_sessions_query

__all__ = ["PostgresLedger"]

log = logging.getLogger(__name__)

_IDEMPOTENCY_SELECT = "SELECT * FROM idempotency_keys WHERE method = $1 AND request_id = $2"


class PostgresLedger(EventLogMixin, IdentityMixin, LeakMixin):
    """A :class:`~service.store.base.Ledger` in a PostgreSQL database, safe to share by replicas."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        options: PoolOptions | None = None,
        name: str = "postgresql",
    ) -> None:
        self._clock = clock
        self._db = PgDatabase(url, options)
        self._name = name

    @property
    def database(self) -> PgDatabase:
        """The pool (for tests and the fleet runtime's own statements)."""
        return self._db

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and apply pending migrations (waiting for another replica doing so).

        Raises:
            StoreUnavailable: the server cannot be reached.
            StoreError: the migrations fail, or the schema is newer than this code knows.
        """

        async def prepare(conn: Conn) -> None:
            await migrate(conn, name=self._name, clock=self._clock)

        await self._db.open(prepare)

    async def close(self) -> None:
        """Close the pool."""
        await self._db.close()

    # -- sessions -------------------------------------------------------------------------------

    async def reserve_session(
        self, new: NewSession, limit: int, owner_limit: int | None = None
    ) -> ReserveOutcome:
        """Return the row of a known request_id, else insert a PENDING row if the pool has a slot
        and, with ``owner_limit``, the owner has fewer than that many of the pool's slots."""
        pool = SessionKind(new.kind).pool

        async def reserve(conn: Conn) -> ReserveOutcome:
            await _sql.lock_admission(conn)
            if new.request_id is not None:
                row = await conn.fetchrow(f"{_rows.SESSION_SELECT} WHERE request_id = $1", new.request_id)
                if row is not None:
                    capacity = await _sql.capacity(conn, pool, limit)
                    return ReserveOutcome(session=_sql.session(row), created=False, capacity=capacity)
            used, refused = await _sql.admit(conn, new, limit, owner_limit)
            return refused or await _sql.insert_pending(conn, new, used)

        return await self._db.transaction(reserve)

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
        """Move a session from one of ``expected`` to ``to_state`` and record the transition
        (see ``SqliteLedger.transition``).

        Raises:
            ValueError: ``updates`` names an unknown or store-managed field.
            TransitionConflict: the session is missing or not in an expected state.
        """
        columns = _rows.encode_updates(updates or {})
        state = SessionState(to_state)
        return await self._db.transaction(
            lambda conn: _sql.transition(conn, session_id, state, expected, at, cause, detail, columns)
        )

    async def start_session(
        self, session_id: str, *, at: float, instance_id: str, updates: Mapping[str, Any] | None = None
    ) -> tuple[SessionRecord, bool]:
        """PENDING -> STARTING, claim the instance's early events, and say whether it was created."""
        columns = _rows.encode_updates({**(updates or {}), "instance_id": instance_id})
        pending = frozenset({SessionState.PENDING})

        async def start(conn: Conn) -> tuple[SessionRecord, bool]:
            record = await _sql.transition(
                conn, session_id, SessionState.STARTING, pending, at, "zego_created", "", columns
            )
            await _events.attach(conn, str(instance_id), session_id, record.labels, record.owner)
            return record, await _events.has_type(conn, str(instance_id), EventType.CREATED)

        return await self._db.transaction(start)

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
        """``transition`` and append ``event`` in one transaction: both happen, or neither."""
        columns = _rows.encode_updates(updates or {})
        state = SessionState(to_state)

        async def both(conn: Conn) -> tuple[SessionRecord, Event]:
            await _events.lock_log(conn)  # first: the log lock, then the session row
            record = await _sql.transition(conn, session_id, state, expected, at, cause, detail, columns)
            appended = await _events.append(conn, event)
            if appended is None:
                raise DuplicateEvent(f"event for {session_id!r} was already stored")
            return record, appended

        return await self._db.transaction(both)

    async def update_session(self, session_id: str, updates: Mapping[str, Any], at: float) -> SessionRecord:
        """Change fields without a state change; bumps the version but records no transition."""
        columns = {**_rows.encode_updates(updates), "updated_at": at}

        async def update(conn: Conn) -> SessionRecord:
            current = await _sql.get(conn, session_id, for_update=True)
            if current is None:
                raise TransitionConflict(None)
            return await _sql.update_row(conn, current, columns)

        return await self._db.transaction(update)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """One session by id."""
        return await self._db.run(lambda conn: _sql.get(conn, session_id))

    async def find_by_instance_id(self, instance_id: str) -> SessionRecord | None:
        """The session of a ZEGO AgentInstanceId (the newest, should ZEGO ever reuse one)."""
        row = await self._db.fetchrow(
            f"{_rows.SESSION_SELECT} WHERE instance_id = $1"
            " ORDER BY created_at DESC, session_id DESC LIMIT 1",
            str(instance_id),
        )
        return None if row is None else _sql.session(row)

    async def find_by_agent_user(self, room_id: str, agent_user_id: str) -> SessionRecord | None:
        """The newest session with these generated ids."""
        row = await self._db.fetchrow(
            f"{_rows.SESSION_SELECT} WHERE room_id = $1 AND agent_user_id = $2"
            " ORDER BY created_at DESC, session_id DESC LIMIT 1",
            room_id,
            agent_user_id,
        )
        return None if row is None else _sql.session(row)

    async def list_sessions(
        self, flt: SessionFilter, limit: int, after: tuple[float, str] | None
    ) -> list[SessionRecord]:
        """Newest first by (created_at, session_id); ``after`` is the last key of the previous page."""
        if limit <= 0:
            return []
        sql, params = list_sessions_query(flt, limit, after)
        return [_sql.session(row) for row in await self._db.fetch(sql, *params)]

    async def sessions_in_states(self, states: frozenset[SessionState]) -> list[SessionRecord]:
        """Every session in one of these states, oldest first."""
        if not states:
            return []
        p = Params()
        marks = p.many(sorted(SessionState(s).value for s in states))
        sql = f"{_rows.SESSION_SELECT} WHERE state IN ({marks}) ORDER BY created_at, session_id"
        return [_sql.session(row) for row in await self._db.fetch(sql, *p.values)]

    async def transitions(self, session_id: str) -> list[Transition]:
        """A session's recorded transitions, in commit order."""
        rows = await self._db.fetch(
            "SELECT * FROM session_transitions WHERE session_id = $1 ORDER BY id", session_id
        )
        try:
            return [_rows.transition_from_row(row) for row in rows]  # type: ignore[arg-type]
        except ValueError as e:
            raise StoreError(f"unreadable transition of {session_id!r}: {e}") from e

    async def capacity(self, pool: str, limit: int) -> Capacity:
        """Current use of one pool ("voice" or "digital_human"); ValueError for another name."""
        return await self._db.run(lambda conn: _sql.capacity(conn, pool, limit))

    async def count_by_kind_state(self) -> dict[tuple[SessionKind, SessionState], int]:
        """Sessions per (kind, state); combinations without sessions are absent."""
        rows = await self._db.fetch("SELECT kind, state, COUNT(*) FROM sessions GROUP BY kind, state")
        try:
            return {(SessionKind(r[0]), SessionState(r[1])): int(r[2]) for r in rows}
        except ValueError as e:
            raise StoreError(f"unreadable session kind or state: {e}") from e

    # -- idempotency and retention --------------------------------------------------------------

    async def get_idempotent(self, method: str, request_id: str) -> IdempotencyRecord | None:
        """A stored result of a mutating call."""
        row = await self._db.fetchrow(_IDEMPOTENCY_SELECT, method, request_id)
        return None if row is None else _rows.idempotency_from_row(row)  # type: ignore[arg-type]

    async def put_idempotent(self, record: IdempotencyRecord) -> IdempotencyRecord:
        """Store a result unless one exists for (method, request_id); return the stored one."""

        async def put(conn: Conn) -> IdempotencyRecord:
            await conn.execute(
                "INSERT INTO idempotency_keys (method, request_id, request_hash, response, created_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (method, request_id) DO NOTHING",
                *dataclasses.astuple(record),
            )
            row = await conn.fetchrow(_IDEMPOTENCY_SELECT, record.method, record.request_id)
            assert row is not None  # inserted, or committed by another (ON CONFLICT waited for it)
            return _rows.idempotency_from_row(row)  # type: ignore[arg-type]

        return await self._db.transaction(put)

    async def purge(self, *, idempotency_before: float, sessions_ended_before: float) -> int:
        """Delete old idempotency keys and terminal sessions with their transitions.

        Returns the rows removed from all three tables (transitions are deleted explicitly so
        they are counted, as in SQLite).
        """
        p = Params()
        doomed = f"state IN ({p.many(TERMINAL)}) AND ended_at < {p.add(float(sessions_ended_before))}"

        async def purge(conn: Conn) -> int:
            keys = await conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < $1", float(idempotency_before)
            )
            transitions = await conn.execute(
                "DELETE FROM session_transitions"
                f" WHERE session_id IN (SELECT session_id FROM sessions WHERE {doomed})",
                *p.values,
            )
            sessions = await conn.execute(f"DELETE FROM sessions WHERE {doomed}", *p.values)
            return sum(_events.row_count(s) for s in (keys, transitions, sessions))

        return await self._db.transaction(purge)
