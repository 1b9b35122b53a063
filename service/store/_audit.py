"""SQL of the audit table, shared by the ledger's transactions and its audit methods."""

from __future__ import annotations

import sqlite3

from service.domain.audit import NewAuditRecord, pending_audit

__all__ = ["AUDIT_COLUMNS", "insert", "write_pending"]

AUDIT_COLUMNS = (
    "at", "principal", "role", "rpc", "session_id", "agent_id", "target", "request_id", "code",
)  # fmt: skip
_INSERT = (
    f"INSERT INTO audit_records ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})"
)


def insert(conn: sqlite3.Connection, record: NewAuditRecord) -> int:
    """Insert one record; its id."""
    cursor = conn.execute(_INSERT, tuple(getattr(record, c) for c in AUDIT_COLUMNS))
    assert cursor.lastrowid is not None
    return int(cursor.lastrowid)


def write_pending(conn: sqlite3.Connection) -> None:
    """Inside a transaction about to commit: write the audited call's record if it is the call's
    first change (``service.domain.audit``), so the change never commits without it."""
    pending = pending_audit.get()
    if pending is not None and pending.id is None and not pending.closed:
        pending.id = insert(conn, pending.record)
