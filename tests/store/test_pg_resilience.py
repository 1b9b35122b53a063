"""Resilience of the PostgreSQL ledger: migrations by replicas starting together, a schema newer
than the code, statement timeouts, an exhausted pool, and a server that restarts or stops."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from service.domain.model import SessionFilter, SessionState
from service.store.base import StoreError, StoreUnavailable
from service.store.migrations_pg import MIGRATIONS, migrate
from service.store.postgres import PoolOptions, PostgresLedger
from service.store.postgres import sessions as pg_sessions
from tests.backends import PgServer
from tests.store.test_sqlite_ledger import new
from tools.pgcluster import _as_server_user, find_bin_dir, throwaway_cluster

S = SessionState


@pytest.fixture
async def url(pg_server: PgServer) -> AsyncIterator[str]:
    database = pg_server.fresh_database()
    yield database
    pg_server.drop(database)


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
