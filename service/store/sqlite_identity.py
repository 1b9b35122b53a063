"""The identity tables of the SQLite ledger (a mixin of ``SqliteLedger``): agent owners, per-owner
usage for quotas and room tokens, and the audit trail."""

from __future__ import annotations

from typing import Any

from service.domain.audit import AuditFilter, AuditRecord, NewAuditRecord
from service.domain.model import SessionKind
from service.store import _audit
from service.store import _sessions as _sql
from service.store._audit import AUDIT_COLUMNS
from service.store._db import Database, fetch_all, fetch_one
from service.store._query import marks
from service.store._sessions import owner_usage

__all__ = ["IdentityMixin", "owner_usage"]

_POOL = {k.value: k.pool for k in SessionKind}


class IdentityMixin:
    """Agent owners, owner usage and audit records; needs the host's ``_db``."""

    _db: Database

    # -- agents ---------------------------------------------------------------------------------

    async def put_agent_owner(self, agent_id: str, owner: str, at: float) -> None:
        """Record who registered ``agent_id`` (the first registration wins)."""
        self._db.transaction(
            lambda conn: conn.execute(
                "INSERT INTO agent_owners (agent_id, owner, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (agent_id) DO NOTHING",
                (agent_id, owner, at),
            )
        )

    async def agent_owner(self, agent_id: str) -> str | None:
        """Who registered ``agent_id`` through the gateway; None if it was not registered here."""
        row = self._db.run(
            lambda conn: fetch_one(conn, "SELECT owner FROM agent_owners WHERE agent_id = ?", (agent_id,))
        )
        return None if row is None else str(row[0])

    async def delete_agent_owner(self, agent_id: str) -> None:
        """Forget the owner of a deleted agent."""
        self._db.transaction(
            lambda conn: conn.execute("DELETE FROM agent_owners WHERE agent_id = ?", (agent_id,))
        )

    # -- usage ------------------------------------------------------------------------------------

    async def usage_by_owner(self) -> dict[str, dict[str, int]]:
        """Slots in use per owner and pool (GetCapacity for viewers and admins)."""
        sql = (
            f"SELECT owner, kind, COUNT(*) FROM sessions WHERE state IN ({marks(_sql.HOLDING)})"
            " GROUP BY owner, kind"
        )
        rows = self._db.run(lambda conn: fetch_all(conn, sql, _sql.HOLDING))
        usage: dict[str, dict[str, int]] = {}
        for owner, kind, count in rows:
            pools = usage.setdefault(str(owner), {})
            pools[_POOL[kind]] = pools.get(_POOL[kind], 0) + int(count)
        return usage

    async def owns_live_session(self, owner: str, user_id: str, room_id: str | None) -> bool:
        """Whether ``owner`` has a session not yet ended for ``user_id`` (in ``room_id``, if given)."""
        sql = f"SELECT 1 FROM sessions WHERE owner = ? AND user_id = ? AND state IN ({marks(_sql.HOLDING)})"
        params: list[Any] = [owner, user_id, *_sql.HOLDING]
        if room_id is not None:
            sql += " AND room_id = ?"
            params.append(room_id)
        return self._db.run(lambda conn: fetch_one(conn, sql + " LIMIT 1", params)) is not None

    # -- audit ------------------------------------------------------------------------------------

    async def append_audit(self, record: NewAuditRecord) -> None:
        """Store one audit record."""
        self._db.transaction(lambda conn: _audit.insert(conn, record))

    async def finish_audit(self, record_id: int, code: str, targets: dict[str, str]) -> None:
        """Set the outcome, and the targets known only at the end, of a PENDING record."""
        columns = {
            name: value for name, value in targets.items() if name in ("session_id", "agent_id", "target")
        }
        sets = ", ".join(["code = ?", *(f"{name} = ?" for name in columns)])
        self._db.transaction(
            lambda conn: conn.execute(
                f"UPDATE audit_records SET {sets} WHERE id = ?", (code, *columns.values(), record_id)
            )
        )

    async def list_audit(self, flt: AuditFilter, limit: int, before_id: int | None) -> list[AuditRecord]:
        """Newest first, keyset-paged by id."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("principal", flt.principal), ("session_id", flt.session_id)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if flt.since is not None:
            where.append("at >= ?")
            params.append(flt.since)
        if flt.until is not None:
            where.append("at < ?")
            params.append(flt.until)
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        sql = f"SELECT id, {', '.join(AUDIT_COLUMNS)} FROM audit_records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        query = sql + " ORDER BY id DESC LIMIT ?"
        rows = self._db.run(lambda conn: fetch_all(conn, query, [*params, limit]))
        return [AuditRecord(id=row[0], **dict(zip(AUDIT_COLUMNS, row[1:], strict=True))) for row in rows]

    async def purge_audit(self, before: float) -> int:
        """Delete records older than ``before``."""
        return int(
            self._db.transaction(
                lambda conn: conn.execute("DELETE FROM audit_records WHERE at < ?", (before,)).rowcount
            )
        )
