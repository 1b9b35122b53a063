"""The identity, audit, leak and create-retry methods of the PostgreSQL ledger (mixins).

The twins of ``service.store.sqlite_identity`` and ``service.store.sqlite_leaks``. A create retry
takes over a request_id under the admission lock, like ``reserve_session``.
"""

from __future__ import annotations

from service.domain.audit import AuditFilter, AuditRecord, NewAuditRecord
from service.domain.model import NewSession, SessionKind, SessionRecord, SessionState
from service.store import _rows
from service.store._audit import AUDIT_COLUMNS
from service.store._sessions import HOLDING, TERMINAL
from service.store.base import ReserveOutcome, StoreError, TransitionConflict
from service.store.postgres import audit as _audit
from service.store.postgres import sessions as _sql
from service.store.postgres.db import Conn, PgDatabase
from service.store.postgres.events import row_count
from service.store.postgres.query import Params

__all__ = ["IdentityMixin", "LeakMixin"]

_POOL = {k.value: k.pool for k in SessionKind}


class IdentityMixin:
    """Agent owners, owner usage and audit records; needs the host's ``_db``."""

    _db: PgDatabase

    async def put_agent_owner(self, agent_id: str, owner: str, at: float) -> None:
        """Record who registered ``agent_id`` (the first registration wins)."""
        await self._db.transaction(
            lambda conn: conn.execute(
                "INSERT INTO agent_owners (agent_id, owner, created_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (agent_id) DO NOTHING",
                agent_id,
                owner,
                float(at),
            )
        )

    async def agent_owner(self, agent_id: str) -> str | None:
        """Who registered ``agent_id`` through the gateway; None if it was not registered here."""
        row = await self._db.fetchrow("SELECT owner FROM agent_owners WHERE agent_id = $1", agent_id)
        return None if row is None else str(row[0])

    async def delete_agent_owner(self, agent_id: str) -> None:
        """Forget the owner of a deleted agent."""
        await self._db.transaction(
            lambda conn: conn.execute("DELETE FROM agent_owners WHERE agent_id = $1", agent_id)
        )

    async def usage_by_owner(self) -> dict[str, dict[str, int]]:
        """Slots in use per owner and pool (GetCapacity for viewers and admins)."""
        p = Params()
        holding = p.many(HOLDING)
        sql = f"SELECT owner, kind, COUNT(*) FROM sessions WHERE state IN ({holding}) GROUP BY owner, kind"
        usage: dict[str, dict[str, int]] = {}
        for owner, kind, count in await self._db.fetch(sql, *p.values):
            pools = usage.setdefault(str(owner), {})
            pools[_POOL[kind]] = pools.get(_POOL[kind], 0) + int(count)
        return usage

    async def owns_live_session(self, owner: str, user_id: str, room_id: str | None) -> bool:
        """Whether ``owner`` has a session not yet ended for ``user_id`` (in ``room_id``, if given)."""
        p = Params(owner, user_id)
        sql = f"SELECT 1 FROM sessions WHERE owner = $1 AND user_id = $2 AND state IN ({p.many(HOLDING)})"
        if room_id is not None:
            sql += f" AND room_id = {p.add(room_id)}"
        return await self._db.fetchrow(sql + " LIMIT 1", *p.values) is not None

    async def append_audit(self, record: NewAuditRecord) -> None:
        """Store one audit record."""
        await self._db.transaction(lambda conn: _audit.insert(conn, record))

    async def finish_audit(self, record_id: int, code: str, targets: dict[str, str]) -> None:
        """Set the outcome, and the targets known only at the end, of a PENDING record."""
        p = Params(code)
        sets = ["code = $1"]
        for name, value in targets.items():
            if name in ("session_id", "agent_id", "target"):
                sets.append(f"{name} = {p.add(value)}")
        sql = f"UPDATE audit_records SET {', '.join(sets)} WHERE id = {p.add(int(record_id))}"
        await self._db.transaction(lambda conn: conn.execute(sql, *p.values))

    async def list_audit(self, flt: AuditFilter, limit: int, before_id: int | None) -> list[AuditRecord]:
        """Newest first, keyset-paged by id."""
        where: list[str] = []
        p = Params()
        for column, value in (("principal", flt.principal), ("session_id", flt.session_id)):
            if value:
                where.append(f"{column} = {p.add(value)}")
        if flt.since is not None:
            where.append(f"at >= {p.add(float(flt.since))}")
        if flt.until is not None:
            where.append(f"at < {p.add(float(flt.until))}")
        if before_id is not None:
            where.append(f"id < {p.add(int(before_id))}")
        sql = f"SELECT id, {', '.join(AUDIT_COLUMNS)} FROM audit_records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._db.fetch(sql + f" ORDER BY id DESC LIMIT {p.add(limit)}", *p.values)
        return [
            AuditRecord(id=row[0], **dict(zip(AUDIT_COLUMNS, tuple(row)[1:], strict=True))) for row in rows
        ]

    async def purge_audit(self, before: float) -> int:
        """Delete records older than ``before``."""
        status = await self._db.transaction(
            lambda conn: conn.execute("DELETE FROM audit_records WHERE at < $1", float(before))
        )
        return row_count(status)


class LeakMixin:
    """Possible leaks and create retries; needs the host's ``_db``."""

    _db: PgDatabase

    async def possible_leaks(self) -> list[SessionRecord]:
        """Ended or failed sessions still flagged ``possible_leak``, oldest end first."""
        p = Params()
        rows = await self._db.fetch(
            f"{_rows.SESSION_SELECT} WHERE possible_leak = 1 AND state IN ({p.many(TERMINAL)})"
            " ORDER BY ended_at, session_id",
            *p.values,
        )
        return [_sql.session(row) for row in rows]

    async def leak_counts(self, given_up_before: float) -> dict[SessionKind, tuple[int, int]]:
        """Per kind: (possible leaks, those of them that ended before ``given_up_before``)."""
        p = Params(float(given_up_before))
        rows = await self._db.fetch(
            "SELECT kind, COUNT(*), COALESCE(SUM(CASE WHEN ended_at < $1 THEN 1 ELSE 0 END), 0)"
            f" FROM sessions WHERE possible_leak = 1 AND state IN ({p.many(TERMINAL)}) GROUP BY kind",
            *p.values,
        )
        try:
            return {SessionKind(r[0]): (int(r[1]), int(r[2])) for r in rows}
        except ValueError as e:
            raise StoreError(f"unreadable session kind: {e}") from e

    async def instance_ids_seen(self, session_id: str) -> list[str]:
        """The ZEGO instance ids that callbacks matched to this session, first logged first."""
        rows = await self._db.fetch(
            "SELECT instance_id FROM events WHERE session_id = $1 AND instance_id IS NOT NULL"
            " GROUP BY instance_id ORDER BY MIN(cursor)",
            session_id,
        )
        return [str(r[0]) for r in rows]

    async def retry_session(
        self, failed_session_id: str, new: NewSession, limit: int, owner_limit: int | None = None
    ) -> ReserveOutcome:
        """Atomically move ``new.request_id`` from a FAILED session to a new PENDING row, if the
        pool has a slot (see ``SqliteLedger.retry_session``).

        Raises:
            TransitionConflict: the failed session is missing or no longer FAILED.
        """
        pool = SessionKind(new.kind).pool
        failed = SessionState.FAILED

        async def retry(conn: Conn) -> ReserveOutcome:
            await _sql.lock_admission(conn)
            old = await _sql.get(conn, failed_session_id, for_update=True)
            if old is None or old.state is not failed:
                raise TransitionConflict(old)
            capacity = await _sql.capacity(conn, pool, limit)
            holder = await conn.fetchrow(f"{_rows.SESSION_SELECT} WHERE request_id = $1", new.request_id)
            if holder is not None and holder["session_id"] != failed_session_id:
                return ReserveOutcome(session=_sql.session(holder), created=False, capacity=capacity)
            used, refused = await _sql.admit(conn, new, limit, owner_limit)
            if refused is not None:
                return refused
            await _sql.update_row(conn, old, {"request_id": None})
            detail = f"request_id retried as session {new.session_id}"
            await _sql.record(conn, old.session_id, failed, failed, new.created_at, "create_retried", detail)
            return await _sql.insert_pending(conn, new, used)

        return await self._db.transaction(retry)
