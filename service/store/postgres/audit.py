"""SQL of the audit table on PostgreSQL, shared by the ledger's transactions and its audit methods."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.domain.audit import NewAuditRecord, PendingAudit, pending_audit
from service.store._audit import AUDIT_COLUMNS

if TYPE_CHECKING:
    from service.store.postgres.db import Conn

__all__ = ["insert", "write_pending"]

_INSERT = (
    f"INSERT INTO audit_records ({', '.join(AUDIT_COLUMNS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(AUDIT_COLUMNS) + 1))}) RETURNING id"
)


async def insert(conn: Conn, record: NewAuditRecord) -> int:
    """Insert one record; its id."""
    record_id = await conn.fetchval(_INSERT, *(getattr(record, c) for c in AUDIT_COLUMNS))
    return int(record_id)


async def write_pending(conn: Conn) -> PendingAudit | None:
    """Inside a transaction about to commit: write the audited call's record if it is the call's
    first change (``service.domain.audit``), so the change never commits without it. Returns the
    pending record it wrote (its id must be cleared again if the transaction does not commit)."""
    pending = pending_audit.get()
    if pending is not None and pending.id is None and not pending.closed:
        pending.id = await insert(conn, pending.record)
        return pending
    return None
