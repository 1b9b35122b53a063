"""The SQLite ledger: schema and migrations, durability across reopen, atomic reservations,
transitions, filtered and paginated listing, idempotency keys and retention."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from service.domain.model import (
    EndReason,
    IdempotencyRecord,
    LabelOp,
    LabelRequirement,
    NewSession,
    SessionFilter,
    SessionKind,
    SessionRecord,
    SessionState,
    Transition,
)
from service.store.base import StoreError, TransitionConflict
from service.store.migrations import MIGRATIONS, latest_version, migrate, split_statements
from service.store.sqlite import SqliteLedger
from tests.backends import LedgerFactory

S = SessionState
K = SessionKind
T0 = 1_700_000_000.0
BIG_ID = "9223372036854775807"  # int64 max: 19 digits, not representable as a float


def new(
    n: int,
    *,
    kind: SessionKind = K.VOICE,
    request_id: str | None = None,
    request_hash: str | None = None,
    created_at: float | None = None,
    agent_id: str = "agent-a",
    room_id: str = "room-1",
    labels: dict[str, str] | None = None,
    session_id: str | None = None,
) -> NewSession:
    return NewSession(
        session_id=session_id or f"s-{n:04d}",
        kind=kind,
        agent_id=agent_id,
        user_id=f"user-{n}",
        room_id=room_id,
        agent_user_id=f"agent-user-{n}",
        agent_stream_id=f"agent-stream-{n}",
        user_stream_id=f"user-stream-{n}",
        labels=labels if labels is not None else {},
        max_duration_seconds=600,
        request_id=request_id,
        request_hash=request_hash,
        created_at=T0 + n if created_at is None else created_at,
    )


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "nested" / "dir" / "ledger.db"


@pytest.fixture
async def ledger(db_path: pathlib.Path, make_ledger: LedgerFactory) -> AsyncIterator[SqliteLedger]:
    """The ledger of the test's backend (SQLite or PostgreSQL: these tests run on both)."""
    store = make_ledger(db_path, clock=lambda: T0)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def sqlite_ledger(db_path: pathlib.Path) -> AsyncIterator[SqliteLedger]:
    """A SQLite ledger, for the tests about its file (schema, pragmas, stored text)."""
    store = SqliteLedger(db_path, clock=lambda: T0)
    await store.open()
    yield store
    await store.close()


async def reserve(ledger: SqliteLedger, session: NewSession, limit: int = 100) -> SessionRecord:
    outcome = await ledger.reserve_session(session, limit)
    assert outcome.created and outcome.session is not None
    return outcome.session


async def ids(ledger: SqliteLedger, flt: SessionFilter | None = None, limit: int = 1000) -> list[str]:
    return [r.session_id for r in await ledger.list_sessions(flt or SessionFilter(), limit, None)]


# -- schema and migrations ---------------------------------------------------------------------


def listing(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def raw(path: pathlib.Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def test_open_creates_parent_dirs_and_schema(
    sqlite_ledger: SqliteLedger, db_path: pathlib.Path
) -> None:
    assert listing(db_path.parent) == ["ledger.db", "ledger.db-shm", "ledger.db-wal", "ledger.db.lock"]
    tables = {r[0] for r in raw(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {
        "schema_migrations",
        "sessions",
        "session_transitions",
        "idempotency_keys",
        "events",
        "event_log_meta",
        "turns",
        "agent_owners",
        "audit_records",
        "callback_nonces",
        "sqlite_sequence",  # AUTOINCREMENT's bookkeeping: event cursors are never reused
    }
    indexes = {r[0] for r in raw(db_path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {
        "sessions_request_id",
        "sessions_state_kind",
        "sessions_created",
        "sessions_instance_id",
        "sessions_agent_user",
    } <= indexes
    assert raw(db_path, "SELECT version, applied_at FROM schema_migrations") == [
        (v, T0) for v, _ in MIGRATIONS
    ]
    pk = raw(db_path, "SELECT name, pk FROM pragma_table_info('idempotency_keys') WHERE pk > 0 ORDER BY pk")
    assert pk == [("method", 1), ("request_id", 2)]


async def test_wal_mode_and_connection_pragmas(sqlite_ledger: SqliteLedger, db_path: pathlib.Path) -> None:
    ledger = sqlite_ledger
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]

    def pragma(conn: sqlite3.Connection, name: str) -> Any:
        return conn.execute(f"PRAGMA {name}").fetchall()[0][0]

    names = ("synchronous", "foreign_keys", "busy_timeout", "wal_autocheckpoint")
    settings = ledger._db.run(lambda conn: {n: pragma(conn, n) for n in names})
    # NORMAL; checkpoints belong to the checkpointer thread, never to a commit on the loop.
    assert settings == {"synchronous": 1, "foreign_keys": 1, "busy_timeout": 2000, "wal_autocheckpoint": 0}


async def test_reopen_is_idempotent(db_path: pathlib.Path) -> None:
    for _ in range(3):
        store = SqliteLedger(db_path)
        await store.open()
        await store.open()  # a second open() is a no-op
        await store.close()
        await store.close()
    assert raw(db_path, "SELECT version FROM schema_migrations") == [(v,) for v, _ in MIGRATIONS]


async def test_database_newer_than_code_is_refused(
    sqlite_ledger: SqliteLedger, db_path: pathlib.Path
) -> None:
    ledger = sqlite_ledger
    await ledger.close()
    raw(db_path, "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)")
    with pytest.raises(StoreError, match=f"schema version 99, newer than version {latest_version()} "):
        await SqliteLedger(db_path).open()


async def test_not_a_database_is_a_store_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an sqlite database, not even close" * 100)
    with pytest.raises(StoreError) as info:
        await SqliteLedger(path).open()
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


async def test_closed_ledger_raises_store_error(db_path: pathlib.Path, make_ledger: LedgerFactory) -> None:
    store = make_ledger(db_path)
    with pytest.raises(StoreError, match="not open"):
        await store.get_session("s-0001")


def test_failed_migration_rolls_back_alone(tmp_path: pathlib.Path) -> None:
    broken = (MIGRATIONS[0], (2, "CREATE TABLE extra (x INTEGER); INSERT INTO nowhere VALUES (1);"))
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, name="m.db", clock=lambda: T0, migrations=broken)
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert versions == [1]  # version 1 committed on its own, version 2 left no trace
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        assert "extra" not in tables and "sessions" in tables
    finally:
        conn.close()


def test_migration_versions_are_consecutive_from_one() -> None:
    assert [version for version, _ in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_split_statements_keeps_trigger_bodies_whole() -> None:
    sql = """
    CREATE TABLE a (x);
    CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO a VALUES (1); SELECT 1; END;
    -- a comment; with a semicolon
    CREATE INDEX i ON a (x);
    """
    statements = split_statements(sql)
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


async def test_memory_database(tmp_path: pathlib.Path) -> None:
    store = SqliteLedger(":memory:")
    await store.open()
    try:
        record = await reserve(store, new(1))
        assert await store.get_session("s-0001") == record
    finally:
        await store.close()
    assert listing(tmp_path) == []


# -- durability --------------------------------------------------------------------------------


async def test_reopen_preserves_every_field(db_path: pathlib.Path, make_ledger: LedgerFactory) -> None:
    store = make_ledger(db_path)
    await store.open()
    labels = {"env": "prod", "tier.name": "gold", "café": "naïve ✓", 'a"b\\c': "q"}
    session = dataclasses.replace(
        new(1, kind=K.LIVE_DIGITAL_HUMAN, request_id="req-1", request_hash="h" * 64, labels=labels),
        cdn_url="rtmp://cdn.example/live/1",
    )
    await reserve(store, session)
    await store.transition(
        "s-0001",
        S.STARTING,
        expected=frozenset({S.PENDING}),
        at=T0 + 10.25,
        cause="zego_created",
        updates={"instance_id": BIG_ID, "digital_human_config": "eyJhIjoxfQ=="},
    )
    await store.transition(
        "s-0001", S.ACTIVE, expected=frozenset({S.STARTING}), at=T0 + 11.5, cause="callback"
    )
    await store.update_session("s-0001", {"possible_leak": True}, at=T0 + 12)
    before = await store.transition(
        "s-0001",
        S.FAILED,
        expected=frozenset({S.ACTIVE}),
        at=T0 + 20.125,
        cause="zego_deleted",
        detail="kicked",
        updates={"end_reason": EndReason.AGENT_KICKED, "end_detail": "same user id", "zego_code": 1203},
    )
    history = await store.transitions("s-0001")
    await store.close()

    store = make_ledger(db_path)
    await store.open()
    try:
        after = await store.get_session("s-0001")
        assert after == before
        assert after == SessionRecord(
            session_id="s-0001",
            kind=K.LIVE_DIGITAL_HUMAN,
            state=S.FAILED,
            agent_id="agent-a",
            user_id="user-1",
            room_id="room-1",
            agent_user_id="agent-user-1",
            agent_stream_id="agent-stream-1",
            user_stream_id="user-stream-1",
            labels=labels,
            max_duration_seconds=600,
            request_id="req-1",
            request_hash="h" * 64,
            created_at=T0 + 1,
            updated_at=T0 + 20.125,
            cdn_url="rtmp://cdn.example/live/1",
            instance_id=BIG_ID,
            digital_human_config="eyJhIjoxfQ==",
            started_at=T0 + 11.5,
            ended_at=T0 + 20.125,
            end_reason=EndReason.AGENT_KICKED,
            end_detail="same user id",
            zego_code=1203,
            possible_leak=True,
            version=4,
        )
        assert isinstance(after.kind, SessionKind) and isinstance(after.end_reason, EndReason)
        assert await store.transitions("s-0001") == history
        assert await store.find_by_instance_id(BIG_ID) == before
    finally:
        await store.close()


async def test_commits_survive_a_process_crash(db_path: pathlib.Path) -> None:
    # The child commits and dies without closing (no checkpoint, WAL file left behind).
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from service.domain.model import NewSession, SessionKind, SessionState
        from service.store.sqlite import SqliteLedger

        async def main() -> None:
            store = SqliteLedger({str(db_path)!r})
            await store.open()
            new = NewSession("s-1", SessionKind.VOICE, "a", "u", "r", "au", "as", "us", {{}}, 60, "q", "h", 1)
            await store.reserve_session(new, 1)
            await store.transition("s-1", SessionState.STARTING, expected=frozenset({{SessionState.PENDING}}),
                                   at=2.0, cause="zego_created", updates={{"instance_id": {BIG_ID!r}}})
            os._exit(0)

        asyncio.run(main())
        """
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=pathlib.Path(__file__).parents[2]
    )
    assert await child.wait() == 0
    store = SqliteLedger(db_path)
    await store.open()
    try:
        record = await store.get_session("s-1")
        assert record is not None and record.state is S.STARTING and record.instance_id == BIG_ID
        assert [t.to_state for t in await store.transitions("s-1")] == [S.PENDING, S.STARTING]
    finally:
        await store.close()


async def test_labels_are_stored_as_sorted_json(sqlite_ledger: SqliteLedger, db_path: pathlib.Path) -> None:
    ledger = sqlite_ledger
    await reserve(ledger, new(1, labels={"b": "2", "a": "1"}))
    assert raw(db_path, "SELECT labels FROM sessions") == [('{"a":"1","b":"2"}',)]


async def test_nineteen_digit_instance_id_is_exact(ledger: SqliteLedger, db_path: pathlib.Path) -> None:
    neighbour = "9223372036854775806"  # the same float as BIG_ID
    assert float(neighbour) == float(BIG_ID)
    for n, instance_id in ((1, BIG_ID), (2, neighbour)):
        await reserve(ledger, new(n))
        await ledger.transition(
            f"s-{n:04d}",
            S.STARTING,
            expected=frozenset({S.PENDING}),
            at=T0 + 5,
            cause="zego_created",
            updates={"instance_id": instance_id},
        )
    found = await ledger.find_by_instance_id(BIG_ID)
    assert found is not None and found.session_id == "s-0001" and found.instance_id == BIG_ID
    other = await ledger.find_by_instance_id(neighbour)
    assert other is not None and other.session_id == "s-0002"
    if isinstance(ledger, SqliteLedger):  # PostgreSQL's column is TEXT by its type
        assert raw(db_path, "SELECT typeof(instance_id) FROM sessions") == [("text",), ("text",)]
    # An integer from a JSON body is stored as its exact decimal text, even above int64.
    await reserve(ledger, new(3))
    huge = 18_446_744_073_709_551_615
    record = await ledger.update_session("s-0003", {"instance_id": huge}, at=T0)
    assert record.instance_id == str(huge)


# -- reservations ------------------------------------------------------------------------------


async def test_concurrent_reservations_respect_the_limit(ledger: SqliteLedger) -> None:
    outcomes = await asyncio.gather(*(ledger.reserve_session(new(n), 10) for n in range(50)))
    created = [o for o in outcomes if o.created]
    rejected = [o for o in outcomes if o.rejected]
    assert len(created) == 10 and len(rejected) == 40
    assert all(not o.created and o.capacity.in_use == 10 for o in rejected)
    assert len(await ids(ledger)) == 10
    capacity = await ledger.capacity("voice", 10)
    assert (capacity.in_use, capacity.pending, capacity.limit) == (10, 10, 10)


async def test_pools_are_separate_and_live_dh_shares_the_dh_pool(ledger: SqliteLedger) -> None:
    assert (await ledger.reserve_session(new(1, kind=K.VOICE), 1)).created
    assert (await ledger.reserve_session(new(2, kind=K.DIGITAL_HUMAN), 1)).created
    live = await ledger.reserve_session(new(3, kind=K.LIVE_DIGITAL_HUMAN), 1)
    assert live.rejected and live.capacity.pool == "digital_human" and live.capacity.in_use == 1
    assert (await ledger.reserve_session(new(4, kind=K.VOICE), 1)).rejected
    assert (await ledger.reserve_session(new(5, kind=K.LIVE_DIGITAL_HUMAN), 2)).created
    assert (await ledger.capacity("digital_human", 2)).in_use == 2
    assert (await ledger.capacity("voice", 2)).in_use == 1
    with pytest.raises(ValueError, match="unknown capacity pool"):
        await ledger.capacity("video", 1)


async def test_terminal_sessions_free_their_slot(ledger: SqliteLedger) -> None:
    await reserve(ledger, new(1), limit=1)
    assert (await ledger.reserve_session(new(2), 1)).rejected
    await ledger.transition("s-0001", S.ENDING, expected=frozenset({S.PENDING}), at=T0, cause="end")
    assert (await ledger.reserve_session(new(2), 1)).rejected  # ENDING still holds the slot
    await ledger.transition("s-0001", S.ENDED, expected=frozenset({S.ENDING}), at=T0, cause="end")
    outcome = await ledger.reserve_session(new(2), 1)
    assert outcome.created and outcome.capacity.in_use == 1


async def test_same_request_id_twice_returns_the_original(ledger: SqliteLedger) -> None:
    first = await ledger.reserve_session(new(1, request_id="r", request_hash="h1"), 5)
    assert first.created
    # A different body (session id, hash, room) under the same request_id: the original comes back.
    second = await ledger.reserve_session(new(2, request_id="r", request_hash="h2", room_id="room-2"), 5)
    assert not second.created and not second.rejected
    assert second.session == first.session
    assert second.capacity.in_use == 1
    assert await ids(ledger) == ["s-0001"]
    assert await ledger.get_session("s-0002") is None


async def test_known_request_id_is_returned_even_when_the_pool_is_full(ledger: SqliteLedger) -> None:
    await reserve(ledger, new(1, request_id="r"), limit=1)
    again = await ledger.reserve_session(new(2, request_id="r"), 1)
    assert not again.rejected and again.session is not None and again.session.session_id == "s-0001"


async def test_same_request_id_concurrently_creates_one_row(ledger: SqliteLedger) -> None:
    outcomes = await asyncio.gather(*(ledger.reserve_session(new(n, request_id="r"), 100) for n in range(20)))
    assert sum(o.created for o in outcomes) == 1
    winner = next(o.session for o in outcomes if o.created)
    assert all(o.session == winner for o in outcomes)
    assert len(await ids(ledger)) == 1


async def test_sqlite_errors_are_wrapped_and_rolled_back(ledger: SqliteLedger) -> None:
    await reserve(ledger, new(1))
    with pytest.raises(StoreError) as info:
        await ledger.reserve_session(new(2, session_id="s-0001"), 10)  # duplicate primary key
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError | asyncpg.UniqueViolationError)
    assert len(await ledger.transitions("s-0001")) == 1  # no stray transition row
    await reserve(ledger, new(3))  # the connection is usable again


async def test_cancelled_callers_leave_the_ledger_usable(ledger: SqliteLedger) -> None:
    for n in range(12):
        task = asyncio.create_task(ledger.reserve_session(new(n), 100))
        for _ in range(n):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib_suppress():
            await task
    await reserve(ledger, new(99))
    for record in await ledger.list_sessions(SessionFilter(), 100, None):
        assert [t.to_state for t in await ledger.transitions(record.session_id)] == [S.PENDING]


class contextlib_suppress:
    """Suppress CancelledError (a BaseException, which contextlib.suppress(Exception) misses)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        return exc_type is None or exc_type is asyncio.CancelledError


# -- transitions -------------------------------------------------------------------------------


async def test_lifecycle_records_every_transition_in_order(ledger: SqliteLedger) -> None:
    pending = await reserve(ledger, new(1))
    assert (pending.state, pending.version, pending.updated_at) == (S.PENDING, 0, T0 + 1)
    steps = [
        (S.STARTING, S.PENDING, "zego_created", {"instance_id": "123"}),
        (S.ACTIVE, S.STARTING, "callback_created", None),
        (S.ENDING, S.ACTIVE, "end_session", None),
        (S.ENDED, S.ENDING, "callback_deleted", {"end_reason": EndReason.ENDED_BY_CALLER, "zego_code": 0}),
    ]
    for i, (to, frm, cause, updates) in enumerate(steps, start=1):
        record = await ledger.transition(
            "s-0001",
            to,
            expected=frozenset({frm}),
            at=T0 + 10 * i,
            cause=cause,
            detail=f"d{i}",
            updates=updates,
        )
        assert (record.state, record.version, record.updated_at) == (to, i, T0 + 10 * i)
    assert record.instance_id == "123"
    assert record.started_at == T0 + 20 and record.ended_at == T0 + 40
    assert record.end_reason is EndReason.ENDED_BY_CALLER and record.zego_code == 0
    assert record.terminal
    assert await ledger.transitions("s-0001") == [
        Transition("s-0001", None, S.PENDING, T0 + 1, "create", ""),
        Transition("s-0001", S.PENDING, S.STARTING, T0 + 10, "zego_created", "d1"),
        Transition("s-0001", S.STARTING, S.ACTIVE, T0 + 20, "callback_created", "d2"),
        Transition("s-0001", S.ACTIVE, S.ENDING, T0 + 30, "end_session", "d3"),
        Transition("s-0001", S.ENDING, S.ENDED, T0 + 40, "callback_deleted", "d4"),
    ]
    assert await ledger.transitions("nope") == []


async def test_explicit_timestamps_win_and_set_ones_are_kept(ledger: SqliteLedger) -> None:
    await reserve(ledger, new(1))
    record = await ledger.transition(
        "s-0001",
        S.ACTIVE,
        expected=frozenset({S.PENDING}),
        at=T0 + 5,
        cause="c",
        updates={"started_at": T0 + 3},
    )
    assert record.started_at == T0 + 3
    record = await ledger.transition("s-0001", S.ACTIVE, expected=frozenset({S.ACTIVE}), at=T0 + 9, cause="c")
    assert record.started_at == T0 + 3
    record = await ledger.transition(
        "s-0001", S.FAILED, expected=frozenset({S.ACTIVE}), at=T0 + 9, cause="c", updates={"ended_at": T0 + 7}
    )
    assert record.ended_at == T0 + 7


async def test_transition_from_a_wrong_state_conflicts(ledger: SqliteLedger) -> None:
    await reserve(ledger, new(1))
    current = await ledger.transition("s-0001", S.STARTING, expected=frozenset({S.PENDING}), at=T0, cause="c")
    with pytest.raises(TransitionConflict) as info:
        await ledger.transition(
            "s-0001", S.ACTIVE, expected=frozenset({S.PENDING, S.ENDING}), at=T0 + 1, cause="late"
        )
    assert info.value.current == current
    assert isinstance(info.value, StoreError)
    assert await ledger.get_session("s-0001") == current
    assert len(await ledger.transitions("s-0001")) == 2


async def test_transition_of_a_missing_session_conflicts_with_none(ledger: SqliteLedger) -> None:
    with pytest.raises(TransitionConflict) as info:
        await ledger.transition("ghost", S.ENDED, expected=frozenset(S), at=T0, cause="c")
    assert info.value.current is None
    with pytest.raises(TransitionConflict) as info:
        await ledger.update_session("ghost", {"possible_leak": True}, at=T0)
    assert info.value.current is None


@pytest.mark.parametrize("field", ["no_such_field", "state", "version", "session_id", "updated_at"])
async def test_bad_update_fields_raise_value_error(ledger: SqliteLedger, field: str) -> None:
    before = await reserve(ledger, new(1))
    with pytest.raises(ValueError, match=field):
        await ledger.transition(
            "s-0001", S.STARTING, expected=frozenset({S.PENDING}), at=T0, cause="c", updates={field: "x"}
        )
    with pytest.raises(ValueError, match=field):
        await ledger.update_session("s-0001", {field: "x"}, at=T0)
    assert await ledger.get_session("s-0001") == before


async def test_update_session_changes_fields_without_a_transition(ledger: SqliteLedger) -> None:
    await reserve(ledger, new(1))
    record = await ledger.update_session(
        "s-0001", {"possible_leak": True, "labels": {"z": "1", "a": "2"}}, at=T0 + 50
    )
    assert record.possible_leak and record.labels == {"a": "2", "z": "1"}
    assert (record.state, record.version, record.updated_at) == (S.PENDING, 1, T0 + 50)
    assert len(await ledger.transitions("s-0001")) == 1


# -- queries -----------------------------------------------------------------------------------


@pytest.fixture
async def populated(ledger: SqliteLedger) -> SqliteLedger:
    """s-0001..s-0006 with assorted kinds, states, agents, rooms and labels."""
    rows: list[tuple[int, SessionKind, str, str, dict[str, str], SessionState | None]] = [
        (1, K.VOICE, "agent-a", "room-1", {"env": "prod", "tier": "gold"}, None),
        (2, K.VOICE, "agent-b", "room-1", {"env": "dev"}, S.ACTIVE),
        (3, K.DIGITAL_HUMAN, "agent-a", "room-2", {"env": "prod"}, S.ENDED),
        (4, K.LIVE_DIGITAL_HUMAN, "agent-b", "room-2", {"tier": "free"}, S.ACTIVE),
        (5, K.DIGITAL_HUMAN, "agent-a", "room-1", {}, S.FAILED),
        (6, K.VOICE, "agent-a", "room-3", {"env": "prod", "vip": ""}, S.ACTIVE),
    ]
    for n, kind, agent, room, labels, state in rows:
        await reserve(ledger, new(n, kind=kind, agent_id=agent, room_id=room, labels=labels))
        if state is not None:
            await ledger.transition(
                f"s-{n:04d}", state, expected=frozenset({S.PENDING}), at=T0 + 100, cause="t"
            )
    return ledger


def _ids(*ns: int) -> list[str]:
    return [f"s-{n:04d}" for n in ns]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (SessionFilter(), _ids(6, 5, 4, 3, 2, 1)),
        (SessionFilter(states=frozenset({S.ACTIVE})), _ids(6, 4, 2)),
        (SessionFilter(states=frozenset({S.ENDED, S.FAILED})), _ids(5, 3)),
        (SessionFilter(kinds=frozenset({K.DIGITAL_HUMAN})), _ids(5, 3)),
        (SessionFilter(kinds=frozenset({K.VOICE, K.LIVE_DIGITAL_HUMAN})), _ids(6, 4, 2, 1)),
        (SessionFilter(agent_id="agent-b"), _ids(4, 2)),
        (SessionFilter(room_id="room-2"), _ids(4, 3)),
        (SessionFilter(room_id="room-9"), []),
        (SessionFilter(label_selector=(LabelRequirement("env", LabelOp.EQUALS, "prod"),)), _ids(6, 3, 1)),
        (SessionFilter(label_selector=(LabelRequirement("env", LabelOp.NOT_EQUALS, "prod"),)), _ids(5, 4, 2)),
        (SessionFilter(label_selector=(LabelRequirement("tier", LabelOp.EXISTS),)), _ids(4, 1)),
        (SessionFilter(label_selector=(LabelRequirement("env", LabelOp.NOT_EXISTS),)), _ids(5, 4)),
        (SessionFilter(label_selector=(LabelRequirement("vip", LabelOp.EXISTS),)), _ids(6)),
        (SessionFilter(label_selector=(LabelRequirement("vip", LabelOp.EQUALS, ""),)), _ids(6)),
        (
            SessionFilter(
                label_selector=(
                    LabelRequirement("env", LabelOp.EQUALS, "prod"),
                    LabelRequirement("tier", LabelOp.NOT_EQUALS, "gold"),
                )
            ),
            _ids(6, 3),
        ),
        (
            SessionFilter(
                states=frozenset({S.ACTIVE, S.PENDING}),
                kinds=frozenset({K.VOICE}),
                agent_id="agent-a",
                label_selector=(LabelRequirement("env", LabelOp.EQUALS, "prod"),),
            ),
            _ids(6, 1),
        ),
        (SessionFilter(room_id="room-1", agent_id="agent-a", states=frozenset({S.FAILED})), _ids(5)),
    ],
)
async def test_list_sessions_filters(
    populated: SqliteLedger, flt: SessionFilter, expected: list[str]
) -> None:
    assert await ids(populated, flt) == expected


@pytest.mark.parametrize("key", ["a.b", "x[0]", 'quo"te', "back\\slash", "tab\there", "café", "$", ""])
async def test_label_selector_handles_awkward_keys(ledger: SqliteLedger, key: str) -> None:
    await reserve(ledger, new(1, labels={key: "v", "other": "w"}))
    await reserve(ledger, new(2, labels={key: "x"}))
    await reserve(ledger, new(3, labels={"other": "v"}))

    async def select(op: LabelOp, value: str = "") -> list[str]:
        return await ids(ledger, SessionFilter(label_selector=(LabelRequirement(key, op, value),)))

    assert await select(LabelOp.EQUALS, "v") == _ids(1)
    assert await select(LabelOp.NOT_EQUALS, "v") == _ids(3, 2)
    assert await select(LabelOp.EXISTS) == _ids(2, 1)
    assert await select(LabelOp.NOT_EXISTS) == _ids(3)


async def test_label_values_are_parameters(ledger: SqliteLedger) -> None:
    await reserve(ledger, new(1, labels={"k": "' OR 1=1 --"}))
    await reserve(ledger, new(2, labels={"k": "plain"}))
    flt = SessionFilter(label_selector=(LabelRequirement("k", LabelOp.EQUALS, "' OR 1=1 --"),))
    assert await ids(ledger, flt) == _ids(1)


async def test_list_orders_newest_first_with_id_tiebreak(ledger: SqliteLedger) -> None:
    await reserve(ledger, new(1, created_at=T0 + 5))
    await reserve(ledger, new(2, created_at=T0 + 9))
    await reserve(ledger, new(3, created_at=T0 + 5))
    await reserve(ledger, new(4, created_at=T0 + 1))
    assert await ids(ledger) == _ids(2, 3, 1, 4)
    assert await ids(ledger, limit=2) == _ids(2, 3)
    assert await ledger.list_sessions(SessionFilter(), 0, None) == []


async def test_keyset_pages_have_no_gaps_or_duplicates(ledger: SqliteLedger) -> None:
    # Only 7 distinct timestamps across 30 rows, so page boundaries fall inside ties.
    for n in range(30):
        await reserve(ledger, new(n, created_at=T0 + n % 7, kind=K.VOICE if n % 2 else K.DIGITAL_HUMAN))
    everything = await ids(ledger)
    for flt in (SessionFilter(), SessionFilter(kinds=frozenset({K.VOICE}))):
        full = await ids(ledger, flt)
        pages: list[list[str]] = []
        after: tuple[float, str] | None = None
        for _ in range(len(full)):  # bounded: a broken cursor must fail, not loop
            page = await ledger.list_sessions(flt, 4, after)
            if not page:
                break
            pages.append([r.session_id for r in page])
            after = (page[-1].created_at, page[-1].session_id)
        assert [i for p in pages for i in p] == full
        assert all(len(p) == 4 for p in pages[:-1])
    assert len(everything) == len(set(everything)) == 30


async def test_find_by_instance_id_and_agent_user(ledger: SqliteLedger) -> None:
    await reserve(ledger, new(1))
    await reserve(ledger, dataclasses.replace(new(2, created_at=T0 + 50), agent_user_id="agent-user-1"))
    await reserve(ledger, new(3, room_id="room-2"))
    await ledger.transition(
        "s-0001",
        S.STARTING,
        expected=frozenset({S.PENDING}),
        at=T0,
        cause="c",
        updates={"instance_id": "777"},
    )
    found = await ledger.find_by_instance_id("777")
    assert found is not None and found.session_id == "s-0001"
    assert await ledger.find_by_instance_id("778") is None
    newest = await ledger.find_by_agent_user("room-1", "agent-user-1")
    assert newest is not None and newest.session_id == "s-0002"
    assert await ledger.find_by_agent_user("room-2", "agent-user-1") is None
    other = await ledger.find_by_agent_user("room-2", "agent-user-3")
    assert other is not None and other.session_id == "s-0003"


async def test_sessions_in_states_oldest_first(populated: SqliteLedger) -> None:
    active = await populated.sessions_in_states(frozenset({S.ACTIVE, S.PENDING}))
    assert [r.session_id for r in active] == _ids(1, 2, 4, 6)
    assert await populated.sessions_in_states(frozenset()) == []


async def test_capacity_and_counts(populated: SqliteLedger) -> None:
    await populated.transition("s-0004", S.ENDING, expected=frozenset({S.ACTIVE}), at=T0, cause="c")
    voice = await populated.capacity("voice", 10)
    assert (voice.pool, voice.limit, voice.in_use, voice.pending) == ("voice", 10, 3, 1)
    dh = await populated.capacity("digital_human", 5)
    assert (dh.in_use, dh.pending) == (1, 0)
    assert await populated.count_by_kind_state() == {
        (K.VOICE, S.PENDING): 1,
        (K.VOICE, S.ACTIVE): 2,
        (K.DIGITAL_HUMAN, S.ENDED): 1,
        (K.DIGITAL_HUMAN, S.FAILED): 1,
        (K.LIVE_DIGITAL_HUMAN, S.ENDING): 1,
    }


async def test_possible_leaks_hold_a_slot_as_suspect_and_are_read_by_their_index(
    ledger: SqliteLedger,
) -> None:
    for n in range(1, 4):
        await reserve(ledger, new(n))
    for n, leak in ((1, True), (2, False)):
        await ledger.transition(
            _ids(n)[0],
            S.FAILED,
            expected=frozenset({S.PENDING}),
            at=T0 + n,
            cause="create_failed",
            updates={"possible_leak": leak, "end_reason": EndReason.CREATE_UNCONFIRMED},
        )
    voice = await ledger.capacity("voice", 2)
    assert (voice.in_use, voice.pending, voice.suspect) == (2, 1, 1)
    assert (await ledger.reserve_session(new(9), 2)).rejected  # the suspect slot is full
    assert [r.session_id for r in await ledger.possible_leaks()] == _ids(1)
    assert await ledger.leak_counts(T0 + 1) == {K.VOICE: (1, 0)}  # suspect, not yet given up
    assert await ledger.leak_counts(T0 + 2) == {K.VOICE: (1, 1)}

    if not isinstance(ledger, SqliteLedger):
        return  # the query plans below are SQLite's
    statements: list[str] = []
    ledger._db.run(lambda conn: conn.set_trace_callback(statements.append))
    try:
        await ledger.capacity("voice", 2)
        await ledger.possible_leaks()
    finally:
        ledger._db.run(lambda conn: conn.set_trace_callback(None))
    plans = ledger._db.run(
        lambda conn: [str(row[3]) for sql in statements for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    )
    # Ended rows are never purged: counting suspects must not walk them.
    assert sum("sessions_possible_leak" in p for p in plans) == 2, plans


# -- idempotency and retention -----------------------------------------------------------------


async def test_idempotency_put_keeps_the_first(ledger: SqliteLedger) -> None:
    assert await ledger.get_idempotent("CreateSession", "r1") is None
    first = IdempotencyRecord("CreateSession", "r1", "hash-1", b"\x00\xffresponse", T0)
    assert await ledger.put_idempotent(first) == first
    second = IdempotencyRecord("CreateSession", "r1", "hash-2", b"other", T0 + 1)
    assert await ledger.put_idempotent(second) == first
    assert await ledger.get_idempotent("CreateSession", "r1") == first
    # The key is (method, request_id): another method may reuse the request id.
    third = IdempotencyRecord("EndSession", "r1", "hash-3", b"", T0 + 2)
    assert await ledger.put_idempotent(third) == third
    assert await ledger.get_idempotent("EndSession", "r1") == third


async def test_purge_drops_old_keys_and_old_terminal_sessions(ledger: SqliteLedger) -> None:
    await ledger.put_idempotent(IdempotencyRecord("M", "old", "h", b"x", T0 - 100))
    await ledger.put_idempotent(IdempotencyRecord("M", "new", "h", b"x", T0 + 100))
    for n in range(1, 5):
        await reserve(ledger, new(n, created_at=T0 - 1000))
    done = frozenset({S.PENDING})
    await ledger.transition("s-0001", S.ENDED, expected=done, at=T0 - 50, cause="c")  # old: purged
    await ledger.transition("s-0002", S.FAILED, expected=done, at=T0 - 60, cause="c")  # old: purged
    await ledger.transition("s-0003", S.ENDED, expected=done, at=T0 + 50, cause="c")  # recent: kept
    await ledger.transition("s-0004", S.ACTIVE, expected=done, at=T0 - 50, cause="c")  # live: kept
    removed = await ledger.purge(idempotency_before=T0, sessions_ended_before=T0)
    assert removed == 1 + 2 * 2 + 2  # one key, two transitions each, two sessions
    assert await ledger.get_idempotent("M", "old") is None
    assert await ledger.get_idempotent("M", "new") is not None
    assert await ids(ledger) == _ids(4, 3)
    assert await ledger.transitions("s-0001") == []
    assert len(await ledger.transitions("s-0003")) == 2
    assert await ledger.purge(idempotency_before=T0, sessions_ended_before=T0) == 0


async def test_an_audited_change_commits_with_its_record_and_a_rollback_takes_both(
    sqlite_ledger: SqliteLedger, db_path: pathlib.Path
) -> None:
    ledger = sqlite_ledger
    from service.auth.principal import Principal, Role
    from service.domain.audit import AuditTrail, pending_audit

    trail = AuditTrail(ledger, clock=lambda: T0)
    pending = trail.begin(Principal("alice", Role.CALLER, "jwt"), "/agentgw.v1.AgentService/DeleteAgent")

    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO agent_owners (agent_id, owner, created_at) VALUES ('a', 'alice', 0)")
        raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        ledger._db.transaction(failing)
    assert pending.id is None and raw(db_path, "SELECT COUNT(*) FROM audit_records") == [(0,)]
    await ledger.put_agent_owner("a", "alice", T0)  # the call's first change
    assert pending.id is not None
    assert raw(db_path, "SELECT code FROM audit_records") == [("PENDING",)]
    await ledger.delete_agent_owner("a")  # later changes of the same call add no record
    await trail.finish(pending, "OK", agent_id="a")
    assert raw(db_path, "SELECT principal, code, agent_id FROM audit_records") == [("alice", "OK", "a")]
    assert pending_audit.get() is None
    # A task the call spawned (it shares the call's context) that commits after the call ended.
    token = pending_audit.set(pending)
    try:
        await ledger.put_agent_owner("b", "alice", T0)
    finally:
        pending_audit.reset(token)
    assert raw(db_path, "SELECT COUNT(*) FROM audit_records") == [(1,)]
    whole = trail.begin(Principal("alice", Role.CALLER, "jwt"), "/agentgw.v1.SessionService/Speak")
    await trail.finish(whole, "OK", session_id="s1")  # no ledger change: written whole at the end
    token = pending_audit.set(whole)
    try:
        await ledger.put_agent_owner("c", "alice", T0)
    finally:
        pending_audit.reset(token)
    assert raw(db_path, "SELECT rpc, code FROM audit_records ORDER BY id") == [
        ("/agentgw.v1.AgentService/DeleteAgent", "OK"),
        ("/agentgw.v1.SessionService/Speak", "OK"),
    ]
