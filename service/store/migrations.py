"""Versioned schema migrations of the SQLite ledger.

Each entry of :data:`MIGRATIONS` is ``(version, sql)``. Versions start at 1, increase by one,
and an entry is never edited once released: a schema change is a new entry appended at the end.
:class:`~service.store.sqlite.SqliteLedger` applies, in order, every version not yet recorded in
the ``schema_migrations`` table, each in its own transaction together with its bookkeeping row,
and refuses to open a database whose newest recorded version is above the newest known here.

We keep a table rather than ``PRAGMA user_version`` because it also records when each version was
applied, which helps when a database is carried between releases.

Enum columns (``kind``, ``state``, ``end_reason``) deliberately carry no CHECK constraints: SQLite
cannot alter a CHECK without rebuilding the table, and adding an enum value must stay a one-line
migration (or none). The store validates enum values when it reads a row.

Migrations run with ``foreign_keys=ON``, which cannot be changed inside a transaction: a later
migration that rebuilds a referenced table must copy the rows before dropping the old table
(or the migration runner must learn to switch the pragma off around it).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from service.store.base import StoreError

__all__ = ["MIGRATIONS", "latest_version", "migrate", "split_statements"]

log = logging.getLogger(__name__)

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at REAL NOT NULL
)
"""

_V1 = """
CREATE TABLE sessions (
    session_id           TEXT PRIMARY KEY,
    kind                 TEXT NOT NULL,
    state                TEXT NOT NULL,
    agent_id             TEXT NOT NULL,
    user_id              TEXT NOT NULL,
    room_id              TEXT NOT NULL,
    agent_user_id        TEXT NOT NULL,
    agent_stream_id      TEXT NOT NULL,
    user_stream_id       TEXT NOT NULL,
    -- JSON object of string -> string, keys sorted, so equal label sets are equal text.
    labels               TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
    max_duration_seconds INTEGER NOT NULL,
    request_id           TEXT,
    request_hash         TEXT,
    created_at           REAL NOT NULL,
    updated_at           REAL NOT NULL,
    cdn_url              TEXT,
    -- ZEGO's AgentInstanceId is a 64-bit integer in decimal: TEXT keeps every digit exactly.
    instance_id          TEXT,
    digital_human_config TEXT,
    started_at           REAL,
    ended_at             REAL,
    end_reason           TEXT,
    end_detail           TEXT NOT NULL DEFAULT '',
    zego_code            INTEGER,
    possible_leak        INTEGER NOT NULL DEFAULT 0 CHECK (possible_leak IN (0, 1)),
    version              INTEGER NOT NULL DEFAULT 0
);

-- Idempotent creates: one row per request_id; rows without one are unconstrained.
CREATE UNIQUE INDEX sessions_request_id ON sessions (request_id) WHERE request_id IS NOT NULL;
-- Capacity counts (state, kind) and recovery scans (state, oldest first).
CREATE INDEX sessions_state_kind ON sessions (state, kind, created_at);
-- ListSessions: newest first with keyset pagination, optionally narrowed by agent or room.
CREATE INDEX sessions_created ON sessions (created_at DESC, session_id DESC);
CREATE INDEX sessions_agent_created ON sessions (agent_id, created_at DESC, session_id DESC);
CREATE INDEX sessions_room_created ON sessions (room_id, created_at DESC, session_id DESC);
-- Callbacks name the instance, or (before ZEGO answered) the room and generated agent user.
CREATE INDEX sessions_instance_id ON sessions (instance_id) WHERE instance_id IS NOT NULL;
CREATE INDEX sessions_agent_user ON sessions (room_id, agent_user_id, created_at DESC);
-- Purge of terminal sessions.
CREATE INDEX sessions_ended_at ON sessions (ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE session_transitions (
    -- The rowid orders a session's transitions as they were committed.
    id         INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    at         REAL NOT NULL,
    cause      TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX session_transitions_session ON session_transitions (session_id, id);

CREATE TABLE idempotency_keys (
    method       TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response     BLOB NOT NULL,
    created_at   REAL NOT NULL,
    PRIMARY KEY (method, request_id)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
"""

_V2 = """
-- The session event log. The cursor is the gateway's global order; AUTOINCREMENT guarantees a
-- cursor is never reused, even after the oldest events are purged.
CREATE TABLE events (
    cursor        INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id    TEXT,
    instance_id   TEXT,
    agent_id      TEXT NOT NULL DEFAULT '',
    room_id       TEXT NOT NULL DEFAULT '',
    agent_user_id TEXT NOT NULL DEFAULT '',
    event_type    TEXT NOT NULL,
    event_time_ms INTEGER NOT NULL,
    received_at   REAL NOT NULL,
    -- ZEGO's Sequence (int64, may exceed 2^53: INTEGER keeps it exact); NULL when synthesized.
    sequence      INTEGER,
    round         INTEGER,
    labels        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
    data          TEXT NOT NULL CHECK (json_valid(data)),
    raw           TEXT,
    hidden        INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1))
);
-- ZEGO retries resend the same (instance, Sequence): stored once.
CREATE UNIQUE INDEX events_dedupe ON events (instance_id, sequence) WHERE sequence IS NOT NULL;
-- Exactly one delivered terminal event per session.
CREATE UNIQUE INDEX events_one_end ON events (session_id)
    WHERE event_type = 'ended' AND hidden = 0 AND session_id IS NOT NULL;
CREATE INDEX events_session ON events (session_id, cursor);
CREATE INDEX events_unmatched ON events (instance_id) WHERE session_id IS NULL;
CREATE INDEX events_received ON events (received_at);

-- How far retention has purged the log: a resume before this cursor has lost events.
CREATE TABLE event_log_meta (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    purged_through  INTEGER NOT NULL
);
INSERT INTO event_log_meta (id, purged_through) VALUES (1, 0);

ALTER TABLE sessions ADD COLUMN exception_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN last_exception_code INTEGER;
ALTER TABLE sessions ADD COLUMN last_exception_message TEXT NOT NULL DEFAULT '';
"""

_V3 = """
-- One row per measured turn (interaction latency against the budget), for per-session stats.
CREATE TABLE turns (
    id              INTEGER PRIMARY KEY,
    session_id      TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    round           INTEGER,
    trigger         TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    latency_ms      REAL,
    budget_exceeded INTEGER NOT NULL DEFAULT 0 CHECK (budget_exceeded IN (0, 1)),
    at              REAL NOT NULL
);
CREATE INDEX turns_session ON turns (session_id, id);
"""

_V4 = """
-- "Was this instance's AgentInstanceCreated logged?" (every create and end asks). The partial
-- events_dedupe index cannot answer it, so without this each ask scanned the whole log.
CREATE INDEX events_instance_type ON events (instance_id, event_type);
"""

_V5 = """
-- Callback (Nonce, Signature) pairs seen within the skew window, with the digest of the body that
-- came with them. In the ledger, not in memory: a pair captured before a restart and replayed with
-- another body after it is still refused. Rows past expires_at are purged.
CREATE TABLE callback_nonces (
    nonce      TEXT NOT NULL,
    signature  TEXT NOT NULL,
    digest     TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (nonce, signature)
) WITHOUT ROWID;
CREATE INDEX callback_nonces_expiry ON callback_nonces (expires_at);
"""

_V7 = """
-- Identities (issue 12). Who created each session: only it, viewers and admins see it.
ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_owner ON sessions (owner, created_at);
-- Events carry their session's owner, so a caller's stream and ListEvents filter in SQL.
ALTER TABLE events ADD COLUMN owner TEXT NOT NULL DEFAULT '';
-- Who registered each agent through the gateway: only it or an admin may change or delete it.
CREATE TABLE agent_owners (
    agent_id   TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- The audit trail of every mutating RPC. No secret is ever written here.
CREATE TABLE audit_records (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          REAL NOT NULL,
    principal   TEXT NOT NULL,
    role        TEXT NOT NULL,
    rpc         TEXT NOT NULL,
    session_id  TEXT NOT NULL DEFAULT '',
    agent_id    TEXT NOT NULL DEFAULT '',
    target      TEXT NOT NULL DEFAULT '',
    request_id  TEXT NOT NULL DEFAULT '',
    code        TEXT NOT NULL
);
CREATE INDEX audit_records_at ON audit_records (at);
CREATE INDEX audit_records_principal ON audit_records (principal, id);
CREATE INDEX audit_records_session ON audit_records (session_id, id) WHERE session_id != '';
"""

_V6 = """
-- Terminal rows flagged possible_leak may still have an instance running at ZEGO, so they keep
-- their capacity slot (admission counts them) and the leak tracker retries them: both read them
-- through this index, which stays tiny because such rows are rare.
CREATE INDEX sessions_possible_leak ON sessions (kind, ended_at) WHERE possible_leak = 1;
"""

_V8 = """
-- Traces across the webhook (service/tracing.py): the CreateSession's W3C traceparent, which every
-- callback for the session links to, and the trace id each event was produced in (empty: untraced).
ALTER TABLE sessions ADD COLUMN trace_parent TEXT;
ALTER TABLE events ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';
"""

_V10 = """
-- The fleet runtime's version (PostgreSQL's: replica heartbeats, sessions.creator, the NOTIFY on
-- appends). A no-op here: the embedded ledger has one owner, by its file lock, so no replica ever
-- needs to tell its rows or its liveness from another's.
"""

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, _V1),
    (2, _V2),
    (3, _V3),
    (4, _V4),
    (5, _V5),
    (6, _V6),
    (7, _V7),
    (8, _V8),
    (10, _V10),
)
"""Every schema version, in order. Append only."""


def latest_version() -> int:
    """The newest schema version this code knows."""
    return MIGRATIONS[-1][0]


def split_statements(sql: str) -> list[str]:
    """Split a migration script into statements (a ``;`` inside a trigger body does not end one).

    ``executescript`` is not an option: it commits any open transaction before it runs, which
    would break the one-transaction-per-migration rule.
    """
    statements: list[str] = []
    pending = ""
    for chunk in sql.split(";"):
        pending += chunk + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement in migration: {pending!r}")
    return statements


def migrate(
    conn: sqlite3.Connection,
    *,
    name: str,
    clock: Callable[[], float],
    migrations: tuple[tuple[int, str], ...] = MIGRATIONS,
) -> None:
    """Apply, in order, every migration not recorded in ``schema_migrations``.

    Each migration and its bookkeeping row commit together in one ``BEGIN IMMEDIATE``
    transaction, so a crash leaves the database at some version, never between two. ``conn``
    must be in autocommit mode (``isolation_level=None``).

    Raises:
        StoreError: the database records a version newer than the newest of ``migrations``.
        sqlite3.Error: a migration failed (it was rolled back).
    """
    newest_known = migrations[-1][0]
    conn.execute(SCHEMA_MIGRATIONS_DDL)
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    newest = int(row[0]) if row is not None else 0
    if newest > newest_known:
        raise StoreError(
            f"ledger {name} has schema version {newest}, newer than version {newest_known} known "
            "to this agentgw: run a newer agentgw or restore a backup made by this one"
        )
    for version, sql in migrations:
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Re-checked under the write lock: another process may have migrated meanwhile.
            done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone()
            if done is None:
                for statement in split_statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, clock())
                )
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as e:
                log.debug("rollback failed: %s", e)
            raise
        if done is None:
            log.info("ledger %s migrated to schema version %d", name, version)
