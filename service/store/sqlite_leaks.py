"""The leak-tracking and create-retry methods of the SQLite ledger (a mixin of ``SqliteLedger``).

A terminal row flagged ``possible_leak`` may still have an instance running (and billing) at ZEGO.
These methods let the leak tracker find such rows and what callbacks told us about them, and let a
retried CreateSession take over the request_id of a failed attempt that is safe to retry.
"""

from __future__ import annotations

import sqlite3

from service.domain.model import NewSession, SessionKind, SessionRecord, SessionState
from service.store import _rows
from service.store import _sessions as _sql
from service.store._db import Database, fetch_all
from service.store._query import marks
from service.store.base import ReserveOutcome, StoreError, TransitionConflict

__all__ = ["LeakMixin"]

_SUSPECTS = (
    f"{_rows.SESSION_SELECT} INDEXED BY sessions_possible_leak"
    f" WHERE possible_leak = 1 AND state IN ({marks(_sql.TERMINAL)})"
    " ORDER BY ended_at, session_id"
)


class LeakMixin:
    """Possible leaks and create retries; needs the host's ``_db``."""

    _db: Database

    async def possible_leaks(self) -> list[SessionRecord]:
        """Ended or failed sessions still flagged ``possible_leak``, oldest end first."""
        rows = self._db.run(lambda conn: fetch_all(conn, _SUSPECTS, _sql.TERMINAL))
        return [_sql.session(row) for row in rows]

    async def leak_counts(self, given_up_before: float) -> dict[SessionKind, tuple[int, int]]:
        """Per kind: (possible leaks, those of them that ended before ``given_up_before``)."""
        rows = self._db.run(
            lambda conn: fetch_all(
                conn,
                "SELECT kind, COUNT(*), COALESCE(SUM(ended_at < ?), 0)"
                " FROM sessions INDEXED BY sessions_possible_leak"
                f" WHERE possible_leak = 1 AND state IN ({marks(_sql.TERMINAL)}) GROUP BY kind",
                (given_up_before, *_sql.TERMINAL),
            )
        )
        try:
            return {SessionKind(r[0]): (int(r[1]), int(r[2])) for r in rows}
        except ValueError as e:
            raise StoreError(f"unreadable session kind: {e}") from e

    async def instance_ids_seen(self, session_id: str) -> list[str]:
        """The ZEGO instance ids that callbacks matched to this session (by id or by its generated
        room and agent user ids), in the order they were first logged."""
        rows = self._db.run(
            lambda conn: fetch_all(
                conn,
                "SELECT instance_id FROM events WHERE session_id = ? AND instance_id IS NOT NULL"
                " GROUP BY instance_id ORDER BY MIN(cursor)",
                (session_id,),
            )
        )
        return [str(r[0]) for r in rows]

    async def retry_session(
        self, failed_session_id: str, new: NewSession, limit: int, owner_limit: int | None = None
    ) -> ReserveOutcome:
        """Atomically move ``new.request_id`` from a FAILED session to a new PENDING row, if the pool
        has a slot (AIP-155 retry of a create that is safe to retry; the caller decided it is).

        The failed row keeps its history; its request_id is cleared and a FAILED -> FAILED
        transition names the session that took over. ``rejected`` when no slot is free (nothing
        changes); ``existing`` with the current holder when another retry took the request_id first.

        Raises:
            TransitionConflict: the failed session is missing or no longer FAILED.
        """
        pool = SessionKind(new.kind).pool
        failed = SessionState.FAILED

        def retry(conn: sqlite3.Connection) -> ReserveOutcome:
            old = _sql.get(conn, failed_session_id)
            if old is None or old.state is not failed:
                raise TransitionConflict(old)
            capacity = _sql.capacity(conn, pool, limit)
            holder = fetch_all(conn, f"{_rows.SESSION_SELECT} WHERE request_id = ?", (new.request_id,))
            if holder and holder[0]["session_id"] != failed_session_id:
                return ReserveOutcome(session=_sql.session(holder[0]), created=False, capacity=capacity)
            used, refused = _sql.admit(conn, new, limit, owner_limit)
            if refused is not None:
                return refused
            _sql.update_row(conn, old, {"request_id": None})
            detail = f"request_id retried as session {new.session_id}"
            _sql.record(conn, old.session_id, failed, failed, new.created_at, "create_retried", detail)
            return _sql.insert_pending(conn, new, used)

        return self._db.transaction(retry)
