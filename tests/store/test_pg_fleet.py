"""Fleet guarantees of the PostgreSQL ledger: several ledgers (each its own pool, as replicas
are) on one database keep the single-process promises: a global cap, global idempotency,
gap-free cursors, one terminal event per session, shared replay protection, safe concurrent
migrations; and a pool survives a server restart."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from service.domain.events import EventFilter, EventType, NewEvent
from service.domain.model import SessionFilter, SessionState
from service.store.base import StoreError, StoreUnavailable
from service.store.migrations_pg import MIGRATIONS, migrate
from service.store.postgres import PoolOptions, PostgresLedger
from service.store.postgres import events as pg_events
from service.store.postgres import sessions as pg_sessions
from tests.backends import PgServer
from tests.store.test_sqlite_ledger import new
from tools.pgcluster import _as_server_user, find_bin_dir, throwaway_cluster

S = SessionState
REPLICAS = 3


def event(
    sequence: int | None, *, instance: str = "i-1", session: str | None = "s-0001", **kw: Any
) -> NewEvent:
    fields: dict[str, Any] = {
        "event_type": EventType.LLM_RESULT,
        "session_id": session,
        "instance_id": instance,
        "agent_id": "agent-a",
        "room_id": "room-1",
        "event_time_ms": 1,
        "received_at": time.time(),
        "sequence": sequence,
        "round": 1,
        "data": {"n": sequence},
    }
    fields.update(kw)
    return NewEvent(**fields)


@pytest.fixture
async def url(pg_server: PgServer) -> AsyncIterator[str]:
    database = pg_server.fresh_database()
    yield database
    pg_server.drop(database)


@pytest.fixture
async def replicas(url: str) -> AsyncIterator[list[PostgresLedger]]:
    """Three ledgers on one database, each with its own pool: three replicas' stores."""
    ledgers = [PostgresLedger(url, options=PoolOptions(max_size=12)) for _ in range(REPLICAS)]
    for ledger in ledgers:
        await ledger.open()
    yield ledgers
    for ledger in ledgers:
        await ledger.close()


# -- admission and idempotency -------------------------------------------------------------------


async def test_admission_is_global_across_replicas(replicas: list[PostgresLedger]) -> None:
    outcomes = await asyncio.gather(
        *(replicas[n % REPLICAS].reserve_session(new(n), limit=10) for n in range(30))
    )
    assert sum(o.created for o in outcomes) == 10
    assert sum(o.rejected for o in outcomes) == 20
    for ledger in replicas:
        assert (await ledger.capacity("voice", 10)).in_use == 10


async def test_admission_counts_owner_quota_globally(replicas: list[PostgresLedger]) -> None:
    mine = [dataclasses.replace(new(n), owner="team-a") for n in range(12)]
    outcomes = await asyncio.gather(
        *(replicas[n % REPLICAS].reserve_session(s, limit=100, owner_limit=4) for n, s in enumerate(mine))
    )
    assert sum(o.created for o in outcomes) == 4
    assert all(o.over_quota for o in outcomes if not o.created)


async def test_a_request_id_retried_on_another_replica_returns_the_same_session(
    replicas: list[PostgresLedger],
) -> None:
    first = await replicas[0].reserve_session(new(1, request_id="req-1", request_hash="h"), limit=10)
    retry = await replicas[1].reserve_session(
        new(2, request_id="req-1", request_hash="h", session_id="s-other"), limit=10
    )
    assert first.created and not retry.created
    assert retry.session == first.session


async def test_the_same_request_id_at_once_on_every_replica_creates_one_row(
    replicas: list[PostgresLedger],
) -> None:
    outcomes = await asyncio.gather(
        *(
            replicas[n % REPLICAS].reserve_session(
                new(n, request_id="req-x", session_id=f"s-try-{n}"), limit=10
            )
            for n in range(9)
        )
    )
    assert sum(o.created for o in outcomes) == 1
    winners = {o.session.session_id for o in outcomes if o.session is not None}
    assert len(winners) == 1
    assert (await replicas[2].capacity("voice", 10)).in_use == 1


async def test_concurrent_transitions_of_one_session_serialise(replicas: list[PostgresLedger]) -> None:
    created = await replicas[0].reserve_session(new(1), limit=10)
    assert created.session is not None
    sid = created.session.session_id

    async def end(ledger: PostgresLedger) -> bool:
        try:
            await ledger.transition(sid, S.FAILED, expected=frozenset({S.PENDING}), at=1.0, cause="x")
            return True
        except StoreError:
            return False

    results = await asyncio.gather(*(end(r) for r in replicas * 2))
    assert sum(results) == 1
    assert [t.to_state for t in await replicas[1].transitions(sid)] == [S.PENDING, S.FAILED]


# -- gap-free cursors ----------------------------------------------------------------------------


async def _open_append(
    ledger: PostgresLedger, started: asyncio.Event, release: asyncio.Event, *, lock: bool
) -> int:
    """Append one event in a transaction that stays open until ``release`` is set."""
    pool = ledger.database._live_pool()
    async with pool.acquire() as conn, conn.transaction():
        if lock:
            await pg_events.lock_log(conn)
        appended = await pg_events.append(conn, event(None, data={"who": "slow"}))
        assert appended is not None
        started.set()
        await release.wait()
        return appended.cursor


async def _held_open_then_fast_append(
    replicas: list[PostgresLedger], *, lock: bool
) -> tuple[int, int, list[list[int]], bool]:
    """A slow appender holds cursor A open; replica 1 appends B; replica 2 reads meanwhile.

    Returns (A, B, what the reader saw while A was open, whether B committed while A was open).
    """
    slow, fast, reader = replicas
    started, release = asyncio.Event(), asyncio.Event()
    held = asyncio.create_task(_open_append(slow, started, release, lock=lock))
    await started.wait()
    quick = asyncio.create_task(fast.append_event(event(None, data={"who": "fast"})))
    seen: list[list[int]] = []
    for _ in range(10):
        seen.append([e.cursor for e in await reader.events_after(0, 100, EventFilter())])
        await asyncio.sleep(0.03)
    fast_done_early = quick.done()
    release.set()
    cursor_a = await held
    appended = await quick
    assert appended is not None
    return cursor_a, appended.cursor, seen, fast_done_early


async def test_an_append_committing_first_never_overtakes_one_held_open(
    replicas: list[PostgresLedger],
) -> None:
    cursor_a, cursor_b, seen, fast_done_early = await _held_open_then_fast_append(replicas, lock=True)
    # The second appender waited for the first: it could not commit while cursor A was in flight,
    # so a reader saw nothing at all meanwhile (never B without A) ...
    assert not fast_done_early
    assert all(s == [] for s in seen)
    # ... and it took the larger cursor: commit order is cursor order.
    assert cursor_b > cursor_a
    logged = await replicas[2].events_after(0, 100, EventFilter())
    assert [e.cursor for e in logged] == [cursor_a, cursor_b]
    assert (await replicas[2].event_bounds())[1] == cursor_b


async def test_without_the_log_lock_a_reader_would_skip_an_event(replicas: list[PostgresLedger]) -> None:
    """The control experiment: the same race with a bare sequence (no lock) loses an event, which
    is what the lock prevents (and shows the test above can tell the difference)."""
    cursor_a, cursor_b, seen, fast_done_early = await _held_open_then_fast_append(replicas, lock=False)
    assert fast_done_early and cursor_a < cursor_b
    assert [cursor_b] in seen  # B visible without A: a subscriber resuming after B misses A
    resumed = await replicas[2].events_after(cursor_b, 100, EventFilter())
    assert cursor_a not in [e.cursor for e in resumed]


async def test_concurrent_appends_on_every_replica_are_read_in_order_without_gaps(
    replicas: list[PostgresLedger],
) -> None:
    """Three replicas append groups while a reader follows by cursor: what it delivers, resuming
    after the last cursor it saw each time, is exactly the final log, in order."""
    delivered: list[int] = []
    stop = asyncio.Event()

    async def follow() -> None:
        after = 0
        while True:
            page = await replicas[0].events_after(after, 500, EventFilter())
            delivered.extend(e.cursor for e in page)
            after = page[-1].cursor if page else after
            if stop.is_set() and not page:
                return
            await asyncio.sleep(0)

    async def write(ledger: PostgresLedger, n: int) -> None:
        for group in range(15):
            await ledger.append_events([event(None, data={"r": n, "g": group}) for _ in range(3)])

    reader = asyncio.create_task(follow())
    await asyncio.gather(*(write(r, n) for n, r in enumerate(replicas)))
    stop.set()
    await asyncio.wait_for(reader, 10)
    final = [e.cursor for e in await replicas[1].events_after(0, 1000, EventFilter())]
    assert len(final) == 3 * 15 * 3
    assert delivered == final


# -- one end, shared nonces ----------------------------------------------------------------------


async def test_one_terminal_event_per_session_across_replicas(replicas: list[PostgresLedger]) -> None:
    ended = [event(None, session="s-9", event_type=EventType.ENDED, data={"r": n}) for n in range(6)]

    async def append(n: int) -> bool:
        try:
            return await replicas[n % REPLICAS].append_event(ended[n]) is not None
        except StoreError:
            return False

    assert sum(await asyncio.gather(*(append(n) for n in range(6)))) == 1
    ends = await replicas[0].events_after(0, 100, EventFilter(event_types=frozenset({EventType.ENDED})))
    assert len(ends) == 1


async def test_replay_protection_is_shared_by_replicas(replicas: list[PostgresLedger]) -> None:
    expires = time.time() + 300
    answers = await asyncio.gather(
        *(
            replicas[n % REPLICAS].remember_callbacks([("nonce", "sig", f"digest-{n}", expires)])
            for n in range(9)
        )
    )
    first = {a[0] for a in answers}
    assert len(first) == 1  # everyone sees the digest the first replica recorded
    assert await replicas[2].remember_callbacks([("nonce", "sig", "other", expires)]) == list(first)


async def test_a_zego_retry_on_another_replica_is_stored_once(replicas: list[PostgresLedger]) -> None:
    results = await asyncio.gather(*(r.append_event(event(77)) for r in replicas))
    assert sum(r is not None for r in results) == 1


# -- migrations ----------------------------------------------------------------------------------


async def test_replicas_starting_together_migrate_once(pg_server: PgServer) -> None:
    name = f"empty_{time.monotonic_ns()}"
    pg_server.cluster.psql(f'CREATE DATABASE "{name}"')
    url = pg_server.cluster.url(name)
    ledger = PostgresLedger(url, options=PoolOptions(max_size=8))
    try:
        await ledger.open()  # an empty pool is enough to borrow connections from
        pool = ledger.database._live_pool()
        async with contextlib.AsyncExitStack() as stack:
            conns = [await stack.enter_async_context(pool.acquire()) for _ in range(5)]
            applied = await asyncio.gather(*(migrate(c, name=name) for c in conns))
        # open() above already migrated; so start again on a second empty database below.
        assert applied == [[]] * 5
    finally:
        await ledger.close()
    again = f"empty2_{time.monotonic_ns()}"
    pg_server.cluster.psql(f'CREATE DATABASE "{again}"')
    openers = [PostgresLedger(pg_server.cluster.url(again)) for _ in range(5)]
    try:
        await asyncio.gather(*(o.open() for o in openers))
        versions = await openers[0].database.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [v[0] for v in versions] == [v for v, _ in MIGRATIONS]
        created = await openers[3].reserve_session(new(1), limit=1)
        assert created.created
    finally:
        for o in openers:
            await o.close()
        for db in (name, again):
            pg_server.drop(pg_server.cluster.url(db))


async def test_concurrent_migrators_one_applies_the_others_wait(pg_server: PgServer) -> None:
    name = f"race_{time.monotonic_ns()}"
    pg_server.cluster.psql(f'CREATE DATABASE "{name}"')
    conns = [await asyncpg.connect(pg_server.cluster.url(name)) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrate(c, name=name) for c in conns))  # type: ignore[arg-type]
        assert sorted(map(len, applied)) == [0, 0, 0, len(MIGRATIONS)]
    finally:
        for c in conns:
            await c.close()
        pg_server.drop(pg_server.cluster.url(name))


async def test_a_schema_newer_than_the_code_is_refused(url: str) -> None:
    ledger = PostgresLedger(url)
    await ledger.open()
    await ledger.database.execute("INSERT INTO schema_migrations VALUES (999, 0)")
    await ledger.close()
    with pytest.raises(StoreError, match="newer than version"):
        await PostgresLedger(url).open()


# -- timeouts and restarts -----------------------------------------------------------------------


async def test_a_statement_stuck_behind_a_lock_times_out_as_unavailable(url: str) -> None:
    holder = PostgresLedger(url)
    impatient = PostgresLedger(url, options=PoolOptions(statement_timeout_seconds=0.2))
    await holder.open()
    await impatient.open()
    try:
        pool = holder.database._live_pool()
        async with pool.acquire() as conn, conn.transaction():
            await pg_sessions.lock_admission(conn)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await impatient.reserve_session(new(1), limit=10)
            assert time.monotonic() - started < 3
        assert (await impatient.reserve_session(new(1), limit=10)).created
    finally:
        await holder.close()
        await impatient.close()


async def _pg_ctl(data_dir: pathlib.Path, *args: str) -> None:
    """Run pg_ctl on the cluster (as its server user), off the event loop. The server's output
    goes to its log file: a restarted server must not inherit our pipes."""
    log = str(data_dir.parent / "server.log")
    command = [str(find_bin_dir() / "pg_ctl"), "-D", str(data_dir), "-l", log, "-w", "-t", "60", *args]
    await asyncio.to_thread(
        subprocess.run, _as_server_user(command), check=True, capture_output=True, timeout=90
    )


async def _until_ok(call: Callable[[], Awaitable[Any]], seconds: float = 15) -> tuple[Any, list[str]]:
    """Call until it succeeds; the errors met meanwhile (each must be StoreUnavailable)."""
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call(), errors
        except StoreUnavailable as e:
            errors.append(type(e.__cause__).__name__)
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_the_pool_reconnects_after_the_server_restarts() -> None:
    with throwaway_cluster() as cluster:
        url = cluster.create_database("restart")
        ledger = PostgresLedger(url, options=PoolOptions(min_size=2, max_size=4))
        await ledger.open()
        try:
            assert (await ledger.reserve_session(new(1), limit=10)).created
            await _pg_ctl(cluster.data_dir, "-m", "fast", "restart")
            # The next call either succeeds on a fresh connection or fails UNAVAILABLE; then it works.
            outcome, _ = await _until_ok(lambda: ledger.reserve_session(new(2), limit=10))
            assert outcome.created
            assert len(await ledger.list_sessions(SessionFilter(), 10, None)) == 2
            # While the server is down every call is UNAVAILABLE, never a hang or INTERNAL ...
            await _pg_ctl(cluster.data_dir, "-m", "immediate", "stop")
            with pytest.raises(StoreUnavailable):
                await ledger.get_session("s-0001")
            # ... and once it is back the same ledger serves again.
            # (restart on a stopped server starts it with the options it last ran with)
            await _pg_ctl(cluster.data_dir, "restart")
            found, _ = await _until_ok(lambda: ledger.get_session("s-0001"))
            assert found is not None and found.state is S.PENDING
        finally:
            await ledger.close()


# -- audit records -------------------------------------------------------------------------------


async def test_an_audited_change_commits_with_its_record_and_a_rollback_takes_both(
    replicas: list[PostgresLedger],
) -> None:
    from service.auth.principal import Principal, Role
    from service.domain.audit import AuditFilter, AuditTrail, pending_audit

    ledger, other = replicas[0], replicas[1]
    trail = AuditTrail(ledger, clock=lambda: 1000.0)
    pending = trail.begin(Principal("alice", Role.CALLER, "jwt"), "/agentgw.v1.AgentService/DeleteAgent")

    async def failing(conn: Any) -> None:
        await conn.execute("INSERT INTO agent_owners (agent_id, owner, created_at) VALUES ('a', 'alice', 0)")
        raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        await ledger.database.transaction(failing)
    assert pending.id is None and await other.list_audit(AuditFilter(), 10, None) == []
    assert await other.agent_owner("a") is None
    await ledger.put_agent_owner("a", "alice", 1000.0)  # the call's first change carries the record
    assert pending.id is not None
    [written] = await other.list_audit(AuditFilter(), 10, None)  # another replica reads it
    assert (written.principal, written.code) == ("alice", "PENDING")
    await ledger.delete_agent_owner("a")  # later changes of the same call add no record
    await trail.finish(pending, "OK", agent_id="a")
    [done] = await other.list_audit(AuditFilter(principal="alice"), 10, None)
    assert (done.code, done.agent_id) == ("OK", "a")
    assert pending_audit.get() is None
    assert await other.purge_audit(2000.0) == 1


async def test_a_call_waiting_for_a_connection_of_an_exhausted_pool_is_unavailable(url: str) -> None:
    options = PoolOptions(min_size=1, max_size=1, statement_timeout_seconds=0.2, connect_timeout_seconds=0.2)
    ledger = PostgresLedger(url, options=options)
    await ledger.open()
    try:
        async with ledger.database._live_pool().acquire():  # the only connection is busy
            with pytest.raises(StoreUnavailable):
                await ledger.get_session("s-0001")
        assert await ledger.get_session("s-0001") is None  # free again: served
    finally:
        await ledger.close()
