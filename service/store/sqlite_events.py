"""The event-log and turn methods of the SQLite ledger (a mixin of ``SqliteLedger``).

They share the ledger's database (``service.store._db``), so an event and a session transition
can be written in one transaction; they live here to keep each module small.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from service.domain.events import Event, EventFilter, EventType, NewEvent
from service.domain.model import SessionRecord, SessionState, Transition, TurnStats
from service.store import _events, _rows
from service.store import _sessions as _sql
from service.store._db import Database, fetch_one
from service.store.base import StoreError

__all__ = ["EventLogMixin"]

_STATES = {s.value: s for s in SessionState}

_SESSION_VIEW = (
    f"SELECT {', '.join(_rows.SESSION_COLUMNS)},"
    " (SELECT json_group_array(json_array(from_state, to_state, at, cause, detail))"
    "  FROM (SELECT * FROM session_transitions t WHERE t.session_id = s.session_id ORDER BY t.id))"
    "  AS view_transitions,"
    " (SELECT json_group_array(json_array(outcome, latency_ms, budget_exceeded))"
    "  FROM turns u WHERE u.session_id = s.session_id) AS view_turns"
    " FROM sessions s WHERE s.session_id = ?"
)


_REMEMBER = (
    "INSERT INTO callback_nonces (nonce, signature, digest, expires_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (nonce, signature) DO UPDATE SET"
    # Both CASEs read the old row, so an expired record is replaced whole and a live one kept.
    "  digest = CASE WHEN expires_at <= ? THEN excluded.digest ELSE digest END,"
    "  expires_at = CASE WHEN expires_at <= ? THEN excluded.expires_at ELSE expires_at END"
    " RETURNING digest"
)


class EventLogMixin:
    """Event log, exceptions, turns and callback nonces; needs the host's ``_db`` and ``_clock``."""

    _db: Database
    _clock: Callable[[], float]

    # -- the event log --------------------------------------------------------------------------

    async def append_event(self, event: NewEvent) -> Event | None:
        """Log one event; None when ZEGO's (instance, Sequence) is already logged.

        One statement is its own (autocommit) transaction.
        """
        return self._db.run(lambda conn: _events.append(conn, event))

    async def append_events(self, events: Sequence[NewEvent]) -> list[Event | None]:
        """Log several events in one transaction (a group commit), each as ``append_event`` would.

        One transaction costs one BEGIN/COMMIT and one WAL append for the whole group.
        """
        if len(events) == 1:
            return [await self.append_event(events[0])]
        return self._db.transaction(lambda conn: _events.append_many(conn, events))

    async def events_after(self, after: int, limit: int, flt: EventFilter) -> list[Event]:
        """Delivered events with cursor > ``after`` matching ``flt``, oldest first."""
        try:
            return self._db.run(lambda conn: _events.events_after(conn, after, limit, flt))
        except ValueError as e:
            raise StoreError(f"unreadable event: {e}") from e

    async def event_bounds(self) -> tuple[int, int]:
        """(purged_through, head) of the event log."""
        return self._db.run(_events.bounds)

    async def has_event(self, instance_id: str, event_type: EventType) -> bool:
        """Whether an event of this type was logged for the instance."""
        return self._db.run(lambda conn: _events.has_type(conn, instance_id, event_type))

    async def record_exception(
        self, session_id: str, code: int, message: str, at: float
    ) -> SessionRecord | None:
        """Count an Exception callback on the session and keep the newest code and message."""

        def record(conn: sqlite3.Connection) -> SessionRecord | None:
            current = _sql.get(conn, session_id)
            if current is None:
                return None
            return _sql.update_row(
                conn,
                current,
                {
                    "exception_count": current.exception_count + 1,
                    "last_exception_code": int(code),
                    "last_exception_message": message[:500],
                    "updated_at": at,
                },
            )

        return self._db.transaction(record)

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
        params = (
            session_id,
            round_,
            trigger,
            outcome,
            latency_ms,
            1 if budget_exceeded else 0,
            at,
            session_id,
        )
        self._db.run(
            lambda conn: conn.execute(
                "INSERT INTO turns (session_id, round, trigger, outcome, latency_ms, budget_exceeded, at)"
                " SELECT ?, ?, ?, ?, ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM sessions WHERE session_id = ?)",
                params,
            )
        )

    async def session_view(self, session_id: str) -> tuple[SessionRecord, list[Transition], TurnStats] | None:
        """A session with its transitions and turn statistics, in one statement."""
        row = self._db.run(lambda conn: fetch_one(conn, _SESSION_VIEW, (session_id,)))
        if row is None:
            return None
        try:
            record = _rows.session_from_row(row)
            transitions = [
                Transition(session_id, _STATES[f] if f else None, _STATES[t], at, cause, detail)
                for f, t, at, cause, detail in json.loads(row["view_transitions"])
            ]
        except (ValueError, KeyError) as e:
            raise StoreError(f"unreadable session {session_id!r}: {e}") from e
        return record, transitions, _stats(json.loads(row["view_turns"]))

    async def purge_events(self, received_before: float) -> int:
        """Drop events received before the cut-off (retention); returns how many.

        In batches of ``_events.PURGE_BATCH``, one transaction each, yielding to the event loop
        between them: appends (which share this thread) get the write lock between batches.
        """
        through = self._db.run(lambda conn: _events.purge_target(conn, received_before))
        if through is None:
            return 0
        step = functools.partial(_events.purge_batch, through=through)
        removed, done = 0, False
        while not done:
            count, done = self._db.transaction(step)
            removed += count
            if not done:
                await asyncio.sleep(0)
        return removed

    # -- callback replay protection -------------------------------------------------------------

    async def remember_callbacks(self, pairs: Sequence[tuple[str, str, str, float]]) -> list[str]:
        """For each (nonce, signature, body digest, expires_at), in order, in one transaction:
        record the pair unless a live record of it exists; return the digests on record.

        Each is one upsert, so of two callbacks with the same pair exactly one is first (also
        within one group). An expired record is replaced, as if it had been purged.
        """
        now = self._clock()

        def remember(conn: sqlite3.Connection) -> list[str]:
            return [
                str(conn.execute(_REMEMBER, (*pair, now, now)).fetchall()[0][0])  # fetchall: RETURNING
                for pair in pairs
            ]

        return self._db.transaction(remember)

    async def purge_callback_nonces(self, now: float) -> int:
        """Drop (Nonce, Signature) records that expired by ``now``; returns how many."""
        return self._db.run(
            lambda conn: int(
                conn.execute("DELETE FROM callback_nonces WHERE expires_at <= ?", (now,)).rowcount
            )
        )


def _stats(rows: Sequence[Sequence[Any]]) -> TurnStats:
    """TurnStats from (outcome, latency_ms, budget_exceeded) rows."""
    if not rows:
        return _NO_TURNS
    latencies = sorted(float(r[1]) for r in rows if r[0] == "spoken" and r[1] is not None)
    return TurnStats(
        turns=len(latencies),
        abandoned=sum(1 for r in rows if r[0] != "spoken"),
        p50_ms=_percentile(latencies, 0.50),
        p95_ms=_percentile(latencies, 0.95),
        max_ms=latencies[-1] if latencies else 0.0,
        budget_breaches=sum(int(r[2]) for r in rows),
    )


_NO_TURNS = TurnStats(turns=0, abandoned=0, p50_ms=0.0, p95_ms=0.0, max_ms=0.0, budget_breaches=0)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(q * len(sorted_values))))
    return sorted_values[rank - 1]
