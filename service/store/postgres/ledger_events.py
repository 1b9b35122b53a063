"""The event-log, turn and callback-nonce methods of the PostgreSQL ledger (a mixin).

Every append takes the event log's lock first (``service.store.postgres.events``: the gap-free
cursor scheme). Callback nonces are one shared table: each (Nonce, Signature) is one upsert, so
of two replicas receiving the same pair, exactly one records it first.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence

from service.domain.events import Event, EventFilter, EventType, NewEvent
from service.domain.model import SessionRecord, SessionState, Transition, TurnStats
from service.store import _rows
from service.store.base import StoreError
from service.store.postgres import events as _events
from service.store.postgres import sessions as _sql
from service.store.postgres.db import Conn, PgDatabase
from service.store.sqlite_events import _stats

__all__ = ["EventLogMixin"]

_STATES = {s.value: s for s in SessionState}

_SESSION_VIEW = (
    f"SELECT {', '.join(_rows.SESSION_COLUMNS)},"
    " COALESCE((SELECT json_agg(json_build_array(from_state, to_state, at, cause, detail) ORDER BY t.id)"
    "  FROM session_transitions t WHERE t.session_id = s.session_id), '[]')::text AS view_transitions,"
    " COALESCE((SELECT json_agg(json_build_array(outcome, latency_ms, budget_exceeded))"
    "  FROM turns u WHERE u.session_id = s.session_id), '[]')::text AS view_turns"
    " FROM sessions s WHERE s.session_id = $1"
)

_REMEMBER = (
    "INSERT INTO callback_nonces AS n (nonce, signature, digest, expires_at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (nonce, signature) DO UPDATE SET"
    # Both CASEs read the old row, so an expired record is replaced whole and a live one kept.
    "  digest = CASE WHEN n.expires_at <= $5 THEN excluded.digest ELSE n.digest END,"
    "  expires_at = CASE WHEN n.expires_at <= $5 THEN excluded.expires_at ELSE n.expires_at END"
    " RETURNING digest"
)


class EventLogMixin:
    """Event log, exceptions, turns and callback nonces; needs the host's ``_db`` and ``_clock``."""

    _db: PgDatabase
    _clock: Callable[[], float]

    async def append_event(self, event: NewEvent) -> Event | None:
        """Log one event; None when ZEGO's (instance, Sequence) is already logged."""

        async def one(conn: Conn) -> Event | None:
            await _events.lock_log(conn)
            return await _events.append(conn, event)

        return await self._db.transaction(one)

    async def append_events(self, events: Sequence[NewEvent]) -> list[Event | None]:
        """Log several events in one transaction (a group commit, one lock for the group)."""

        async def group(conn: Conn) -> list[Event | None]:
            await _events.lock_log(conn)
            return await _events.append_many(conn, events)

        return await self._db.transaction(group)

    async def events_after(self, after: int, limit: int, flt: EventFilter) -> list[Event]:
        """Delivered events with cursor > ``after`` matching ``flt``, oldest first."""
        return await self._db.run(lambda conn: _events.events_after(conn, after, limit, flt))

    async def event_bounds(self) -> tuple[int, int]:
        """(purged_through, head) of the event log."""
        return await self._db.run(_events.bounds)

    async def has_event(self, instance_id: str, event_type: EventType) -> bool:
        """Whether an event of this type was logged for the instance."""
        return await self._db.run(lambda conn: _events.has_type(conn, instance_id, event_type))

    async def record_exception(
        self, session_id: str, code: int, message: str, at: float
    ) -> SessionRecord | None:
        """Count an Exception callback on the session and keep the newest code and message."""

        async def record(conn: Conn) -> SessionRecord | None:
            current = await _sql.get(conn, session_id, for_update=True)
            if current is None:
                return None
            return await _sql.update_row(
                conn,
                current,
                {
                    "exception_count": current.exception_count + 1,
                    "last_exception_code": int(code),
                    "last_exception_message": message[:500],
                    "updated_at": at,
                },
            )

        return await self._db.transaction(record)

    async def record_turn(
        self,
        session_id: str,
        *,
        round_: int | None,
        trigger: str,
        outcome: str,
        latency_ms: float | None,
        budget_exceeded: bool,
        at: float,
    ) -> None:
        """Keep one measured (or abandoned) turn of a session."""
        await self._db.execute(
            "INSERT INTO turns (session_id, round, trigger, outcome, latency_ms, budget_exceeded, at)"
            " SELECT $1, $2, $3, $4, $5, $6, $7"
            " WHERE EXISTS (SELECT 1 FROM sessions WHERE session_id = $1)",
            session_id,
            round_,
            trigger,
            outcome,
            None if latency_ms is None else float(latency_ms),
            1 if budget_exceeded else 0,
            float(at),
        )

    async def session_view(self, session_id: str) -> tuple[SessionRecord, list[Transition], TurnStats] | None:
        """A session with its transitions and turn statistics, in one statement."""
        row = await self._db.fetchrow(_SESSION_VIEW, session_id)
        if row is None:
            return None
        try:
            record = _rows.session_from_row(tuple(row))
            transitions = [
                Transition(session_id, _STATES[f] if f else None, _STATES[t], at, cause, detail)
                for f, t, at, cause, detail in json.loads(row["view_transitions"])
            ]
        except (ValueError, KeyError) as e:
            raise StoreError(f"unreadable session {session_id!r}: {e}") from e
        return record, transitions, _stats(json.loads(row["view_turns"]))

    async def purge_events(self, received_before: float) -> int:
        """Drop events received before the cut-off (retention); returns how many, in batches of
        ``PURGE_BATCH`` events, one transaction each."""
        through = await self._db.run(lambda conn: _events.purge_target(conn, float(received_before)))
        if through is None:
            return 0
        step = functools.partial(_events.purge_batch, through=through)
        removed, done = 0, False
        while not done:
            count, done = await self._db.transaction(step)
            removed += count
        return removed

    # -- callback replay protection -------------------------------------------------------------

    async def remember_callbacks(self, pairs: Sequence[tuple[str, str, str, float]]) -> list[str]:
        """For each (nonce, signature, body digest, expires_at), in order, in one transaction:
        record the pair unless a live record of it exists; return the digests on record."""
        now = float(self._clock())

        async def remember(conn: Conn) -> list[str]:
            digests: list[str] = []
            for nonce, signature, digest, expires_at in pairs:
                value = await conn.fetchval(_REMEMBER, nonce, signature, digest, float(expires_at), now)
                digests.append(str(value))
            return digests

        return await self._db.transaction(remember)

    async def purge_callback_nonces(self, now: float) -> int:
        """Drop (Nonce, Signature) records that expired by ``now``; returns how many."""
        status = await self._db.execute("DELETE FROM callback_nonces WHERE expires_at <= $1", float(now))
        return _events.row_count(status)
