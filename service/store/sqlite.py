"""The embedded SQLite implementation of the :class:`~service.store.base.Ledger`.

ZEGO cannot list the instances we created, so this file is the only inventory of paid, capped
resources. Everything here favours not losing or tearing data over speed:

* One aiosqlite connection (SQLite serialises writers anyway) in WAL mode.
* Every mutating method is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, so it takes the
  write lock up front and a check (capacity, expected state) cannot be invalidated before its write.
* An ``asyncio.Lock`` serialises whole transactions, reads included: on one shared connection,
  statements of two coroutines would otherwise interleave, and a read could see another
  coroutine's uncommitted (possibly later rolled back) writes.
* sqlite3 errors surface as :class:`StoreError` with the original as ``__cause__``.

If the awaiting coroutine is cancelled mid-transaction, the transaction is rolled back. A
cancellation that lands while COMMIT itself is running cannot be told apart from a failure after
the commit, so a cancelled caller must treat the outcome as unknown (as with any remote commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pathlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import aiosqlite

from service.domain.events import Event, NewEvent
from service.domain.model import (
    TERMINAL_STATES,
    IdempotencyRecord,
    NewSession,
    SessionFilter,
    SessionKind,
    SessionRecord,
    SessionState,
    Transition,
)
from service.store import _events, _rows
from service.store._query import list_sessions_query, marks
from service.store.base import Capacity, DuplicateEvent, ReserveOutcome, StoreError, TransitionConflict
from service.store.migrations import migrate
from service.store.sqlite_events import EventLogMixin

__all__ = ["SqliteLedger"]

log = logging.getLogger(__name__)

_POOL_KINDS = {
    pool: tuple(k.value for k in SessionKind if k.pool == pool) for pool in {k.pool for k in SessionKind}
}

_HOLDING = tuple(s.value for s in SessionState if s not in TERMINAL_STATES)
_PENDING = (SessionState.PENDING.value, SessionState.STARTING.value)
_TERMINAL = tuple(s.value for s in TERMINAL_STATES)

_IDEMPOTENCY_SELECT = "SELECT * FROM idempotency_keys WHERE method = ? AND request_id = ?"

_PRAGMAS = (
    # Wait for a lock held by another process (a backup tool, sqlite3 shell) instead of failing.
    "PRAGMA busy_timeout=5000",
    # WAL lets readers run beside the writer and makes a commit a single sequential append.
    "PRAGMA journal_mode=WAL",
    # In WAL mode NORMAL is durable across process crashes (a committed transaction is in the
    # WAL file, which the OS keeps even if we die); only an OS crash or power loss may lose the
    # last commits. That is the failure we care about; FULL would fsync every commit for it.
    "PRAGMA synchronous=NORMAL",
    # Transitions reference their session; per connection, off by default.
    "PRAGMA foreign_keys=ON",
)


def _session(row: sqlite3.Row) -> SessionRecord:
    try:
        return _rows.session_from_row(row)
    except (ValueError, TypeError, KeyError) as e:
        raise StoreError(f"unreadable session row {row['session_id']!r}: {e}") from e


# Each aiosqlite call is a hop to its worker thread, and the hops, not SQLite, dominate the cost of
# a ledger call: so every statement here runs in one hop (execute_fetchall), RETURNING included.


async def _one(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
    rows = await conn.execute_fetchall(sql, params)
    return next(iter(rows), None)


async def _all(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    return list(await conn.execute_fetchall(sql, params))


async def _exec(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> None:
    await conn.execute_fetchall(sql, params)


async def _run(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
    async with conn.execute(sql, params) as cur:
        return cur.rowcount


class SqliteLedger(EventLogMixin):
    """A :class:`~service.store.base.Ledger` in one SQLite file (or ``":memory:"`` for tests)."""

    def __init__(self, path: pathlib.Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self._memory = str(path) == ":memory:"
        self._path = str(path) if self._memory else pathlib.Path(path)
        self._clock = clock
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the database, creating it and its parent directories, and apply pending migrations.

        Raises:
            StoreError: the file cannot be opened, is not a database, fails to migrate, or has a
                schema newer than this code knows.
        """
        if self._conn is not None:
            return
        try:
            if isinstance(self._path, pathlib.Path):
                self._path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: sqlite3 must not open transactions behind our back; we issue
            # BEGIN IMMEDIATE / COMMIT ourselves.
            conn = await aiosqlite.connect(self._path, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open ledger {self._path}: {e}") from e
        conn.row_factory = sqlite3.Row
        try:
            for pragma in _PRAGMAS:
                await _all(conn, pragma)
            mode = await _one(conn, "PRAGMA journal_mode")
            if not self._memory and (mode is None or str(mode[0]).lower() != "wal"):
                log.warning("ledger %s is not in WAL mode (journal_mode=%s)", self._path, mode and mode[0])
            await migrate(conn, name=str(self._path), clock=self._clock)
        except BaseException as e:
            await conn.close()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"cannot open ledger {self._path}: {e}") from e
            raise
        self._conn = conn

    async def close(self) -> None:
        """Wait for the running transaction, then close (the last close checkpoints the WAL)."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            with contextlib.suppress(sqlite3.Error):
                await _all(conn, "PRAGMA optimize")
            try:
                await conn.close()
            except sqlite3.Error as e:
                raise StoreError(f"cannot close ledger {self._path}: {e}") from e

    # -- transactions ---------------------------------------------------------------------------

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError("ledger is not open")
        return self._conn

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on exit, rolled back on any exception."""
        async with self._lock:
            conn = self._connection()
            try:
                # Inside the try: a caller cancelled while BEGIN runs must not leave it open.
                await conn.execute_fetchall("BEGIN IMMEDIATE")
                yield conn
                await conn.execute_fetchall("COMMIT")
            except sqlite3.Error as e:
                await _rollback(conn)
                raise StoreError(f"ledger transaction failed: {e}") from e
            except BaseException:
                await _rollback(conn)
                raise

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive use of the connection for reads, or for one write statement.

        The connection is in autocommit mode, so a single statement run here is its own atomic
        transaction: that saves the BEGIN and COMMIT hops where one statement is all there is.
        """
        async with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as e:
                raise StoreError(f"ledger read failed: {e}") from e

    # -- sessions -------------------------------------------------------------------------------

    async def _capacity(self, conn: aiosqlite.Connection, pool: str, limit: int) -> Capacity:
        kinds = _POOL_KINDS.get(pool)
        if kinds is None:
            raise ValueError(f"unknown capacity pool {pool!r}")
        row = await _one(
            conn,
            f"SELECT COUNT(*), COALESCE(SUM(state IN ({marks(_PENDING)})), 0) FROM sessions"
            f" WHERE kind IN ({marks(kinds)}) AND state IN ({marks(_HOLDING)})",
            (*_PENDING, *kinds, *_HOLDING),
        )
        assert row is not None  # an aggregate always yields a row
        return Capacity(pool=pool, limit=limit, in_use=int(row[0]), pending=int(row[1]))

    async def _get(self, conn: aiosqlite.Connection, session_id: str) -> SessionRecord | None:
        row = await _one(conn, f"{_rows.SESSION_SELECT} WHERE session_id = ?", (session_id,))
        return None if row is None else _session(row)

    async def reserve_session(self, new: NewSession, limit: int) -> ReserveOutcome:
        """Return the row of a known request_id, else insert a PENDING row if the pool has a slot."""
        pool = SessionKind(new.kind).pool
        params = _rows.new_session_params(new, SessionState.PENDING)
        async with self._write() as conn:
            if new.request_id is not None:
                row = await _one(conn, f"{_rows.SESSION_SELECT} WHERE request_id = ?", (new.request_id,))
                if row is not None:
                    capacity = await self._capacity(conn, pool, limit)
                    return ReserveOutcome(session=_session(row), created=False, capacity=capacity)
            capacity = await self._capacity(conn, pool, limit)
            if capacity.in_use >= limit:
                return ReserveOutcome(session=None, created=False, capacity=capacity)
            await _exec(
                conn,
                f"INSERT INTO sessions ({', '.join(params)}) VALUES ({', '.join(':' + c for c in params)})",
                params,
            )
            await self._record(conn, new.session_id, None, SessionState.PENDING, new.created_at, "create", "")
            created = await self._get(conn, new.session_id)
            capacity = Capacity(pool, limit, capacity.in_use + 1, capacity.pending + 1)
            return ReserveOutcome(session=created, created=True, capacity=capacity)

    async def _record(
        self,
        conn: aiosqlite.Connection,
        session_id: str,
        from_state: SessionState | None,
        to_state: SessionState,
        at: float,
        cause: str,
        detail: str,
    ) -> None:
        await _exec(
            conn,
            "INSERT INTO session_transitions (session_id, from_state, to_state, at, cause, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, None if from_state is None else from_state.value, to_state.value, at, cause, detail),
        )

    async def _update(
        self, conn: aiosqlite.Connection, current: SessionRecord, columns: Mapping[str, Any]
    ) -> SessionRecord:
        """Apply ``columns`` and bump the version, guarded by the state and version just read."""
        sets = ", ".join(f"{c} = :{c}" for c in columns)
        rows = await conn.execute_fetchall(
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
        updated = [_session(row) for row in rows]
        if len(updated) != 1:  # cannot happen under BEGIN IMMEDIATE; never write blind
            raise TransitionConflict(await self._get(conn, current.session_id))
        return updated[0]

    async def _transition(
        self,
        conn: aiosqlite.Connection,
        session_id: str,
        to_state: SessionState,
        expected: frozenset[SessionState],
        at: float,
        cause: str,
        detail: str,
        columns: dict[str, Any],
    ) -> SessionRecord:
        current = await self._get(conn, session_id)
        if current is None or current.state not in expected:
            raise TransitionConflict(current)
        columns |= {"state": to_state.value, "updated_at": at}
        if to_state is SessionState.ACTIVE and current.started_at is None:
            columns.setdefault("started_at", at)
        if to_state in TERMINAL_STATES and current.ended_at is None:
            columns.setdefault("ended_at", at)
        updated = await self._update(conn, current, columns)
        await self._record(conn, session_id, current.state, to_state, at, cause, detail)
        return updated

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
        async with self._write() as conn:
            return await self._transition(
                conn, session_id, SessionState(to_state), expected, at, cause, detail, columns
            )

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
        async with self._write() as conn:
            record = await self._transition(
                conn, session_id, SessionState(to_state), expected, at, cause, detail, columns
            )
            appended = await _events.append(conn, event)
            if appended is None:
                raise DuplicateEvent(f"event for {session_id!r} was already stored")
            return record, appended

    async def update_session(self, session_id: str, updates: Mapping[str, Any], at: float) -> SessionRecord:
        """Change fields without a state change; bumps the version but records no transition.

        Raises:
            ValueError: ``updates`` names an unknown or store-managed field.
            TransitionConflict: the session is missing (``current`` is None).
        """
        columns = _rows.encode_updates(updates)
        async with self._write() as conn:
            current = await self._get(conn, session_id)
            if current is None:
                raise TransitionConflict(None)
            return await self._update(conn, current, {**columns, "updated_at": at})

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """One session by id."""
        async with self._read() as conn:
            return await self._get(conn, session_id)

    async def find_by_instance_id(self, instance_id: str) -> SessionRecord | None:
        """The session of a ZEGO AgentInstanceId (the newest, should ZEGO ever reuse one)."""
        async with self._read() as conn:
            row = await _one(
                conn,
                f"{_rows.SESSION_SELECT} WHERE instance_id = ?"
                " ORDER BY created_at DESC, session_id DESC LIMIT 1",
                (str(instance_id),),
            )
            return None if row is None else _session(row)

    async def find_by_agent_user(self, room_id: str, agent_user_id: str) -> SessionRecord | None:
        """The newest session with these generated ids."""
        async with self._read() as conn:
            row = await _one(
                conn,
                f"{_rows.SESSION_SELECT} WHERE room_id = ? AND agent_user_id = ?"
                " ORDER BY created_at DESC, session_id DESC LIMIT 1",
                (room_id, agent_user_id),
            )
            return None if row is None else _session(row)

    async def list_sessions(
        self, flt: SessionFilter, limit: int, after: tuple[float, str] | None
    ) -> list[SessionRecord]:
        """Newest first by (created_at, session_id); ``after`` is the last key of the previous page."""
        if limit <= 0:
            return []
        sql, params = list_sessions_query(flt, limit, after)
        async with self._read() as conn:
            return [_session(row) for row in await _all(conn, sql, params)]

    async def sessions_in_states(self, states: frozenset[SessionState]) -> list[SessionRecord]:
        """Every session in one of these states, oldest first."""
        if not states:
            return []
        values = sorted(SessionState(s).value for s in states)
        sql = f"{_rows.SESSION_SELECT} WHERE state IN ({marks(values)}) ORDER BY created_at, session_id"
        async with self._read() as conn:
            return [_session(row) for row in await _all(conn, sql, values)]

    async def transitions(self, session_id: str) -> list[Transition]:
        """A session's recorded transitions, in commit order."""
        async with self._read() as conn:
            rows = await _all(
                conn, "SELECT * FROM session_transitions WHERE session_id = ? ORDER BY id", (session_id,)
            )
        try:
            return [_rows.transition_from_row(row) for row in rows]
        except ValueError as e:
            raise StoreError(f"unreadable transition of {session_id!r}: {e}") from e

    async def capacity(self, pool: str, limit: int) -> Capacity:
        """Current use of one pool ("voice" or "digital_human"); ValueError for another name."""
        async with self._read() as conn:
            return await self._capacity(conn, pool, limit)

    async def count_by_kind_state(self) -> dict[tuple[SessionKind, SessionState], int]:
        """Sessions per (kind, state); combinations without sessions are absent."""
        async with self._read() as conn:
            rows = await _all(conn, "SELECT kind, state, COUNT(*) FROM sessions GROUP BY kind, state")
        try:
            return {(SessionKind(r[0]), SessionState(r[1])): int(r[2]) for r in rows}
        except ValueError as e:
            raise StoreError(f"unreadable session kind or state: {e}") from e

    # -- idempotency and retention --------------------------------------------------------------

    async def get_idempotent(self, method: str, request_id: str) -> IdempotencyRecord | None:
        """A stored result of a mutating call."""
        async with self._read() as conn:
            row = await _one(conn, _IDEMPOTENCY_SELECT, (method, request_id))
            return None if row is None else _rows.idempotency_from_row(row)

    async def put_idempotent(self, record: IdempotencyRecord) -> IdempotencyRecord:
        """Store a result unless one exists for (method, request_id); return the stored one."""
        async with self._write() as conn:
            await _exec(
                conn,
                "INSERT INTO idempotency_keys (method, request_id, request_hash, response, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (method, request_id) DO NOTHING",
                dataclasses.astuple(record),
            )
            row = await _one(conn, _IDEMPOTENCY_SELECT, (record.method, record.request_id))
            assert row is not None  # inserted or already there, in this transaction
            return _rows.idempotency_from_row(row)

    async def purge(self, *, idempotency_before: float, sessions_ended_before: float) -> int:
        """Delete old idempotency keys and terminal sessions with their transitions.

        Returns the rows removed from all three tables. Transitions are deleted explicitly
        rather than by ON DELETE CASCADE because cascaded rows are not counted.
        """
        doomed = f"state IN ({marks(_TERMINAL)}) AND ended_at < ?"
        doomed_params = (*_TERMINAL, sessions_ended_before)
        async with self._write() as conn:
            keys = await _run(
                conn, "DELETE FROM idempotency_keys WHERE created_at < ?", (idempotency_before,)
            )
            transitions = await _run(
                conn,
                "DELETE FROM session_transitions"
                f" WHERE session_id IN (SELECT session_id FROM sessions WHERE {doomed})",
                doomed_params,
            )
            sessions = await _run(conn, f"DELETE FROM sessions WHERE {doomed}", doomed_params)
            return keys + transitions + sessions


async def _rollback(conn: aiosqlite.Connection) -> None:
    # Best effort: the original error matters more, and a failed COMMIT may already have ended
    # the transaction ("no transaction is active").
    try:
        await conn.execute_fetchall("ROLLBACK")
    except sqlite3.Error as e:
        log.debug("rollback failed: %s", e)
