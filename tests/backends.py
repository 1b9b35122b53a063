"""The ledger backends the suite runs against: SQLite (a file per test) and PostgreSQL.

PostgreSQL is one throwaway cluster for the whole run (``tools.pgcluster``), started the first
time a test needs it; every test gets a fresh database, ``CREATE DATABASE ... TEMPLATE`` of one
migrated at start-up (a file copy: no migrations per test), dropped when the test ends.

Without PostgreSQL's server binaries the ``postgres`` variants are skipped, all with the one
reason below; with ``CI`` set they fail instead, like ``make rules`` without promtool.

Fixtures:

* ``ledger_backend``: ``"sqlite"`` or ``"postgres"`` (parametrises every test that uses it).
* ``database_url``: None for SQLite, else the URL of the test's fresh database.
* ``make_ledger``: ``make_ledger(path, clock=...)`` opens-to-be a ledger of the test's backend;
  the same ``path`` names the same store (a reopen after a "restart"), another path another.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import pathlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from service.store.postgres import PostgresLedger
from service.store.sqlite import SqliteLedger
from tools.pgcluster import Cluster, PostgresUnavailable, find_bin_dir, throwaway_cluster

BACKENDS = ("sqlite", "postgres")
TEMPLATE = "agentgw_template"
_ids = itertools.count(1)


def _ci() -> bool:
    return os.environ.get("CI", "") not in ("", "false", "0")


class _Admin:
    """One superuser connection on a thread of its own, for the sync fixtures' CREATE and DROP
    DATABASE (a psql process per statement would cost ~50 ms each). Drops run in the background."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-admin", daemon=True)
        self._thread.start()
        self._lock = asyncio.Lock()
        self._conn: asyncpg.Connection = self._wait(asyncpg.connect(url))
        self._pending: list[concurrent.futures.Future[None]] = []

    def _wait(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    async def _execute(self, sql: str) -> None:
        async with self._lock:
            await self._conn.execute(sql)

    def execute(self, sql: str) -> None:
        self._wait(self._execute(sql))

    def execute_later(self, sql: str) -> None:
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(asyncio.run_coroutine_threadsafe(self._execute(sql), self._loop))

    def close(self) -> None:
        for future in self._pending:
            future.result(60)
        self._wait(self._conn.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class PgServer:
    """The run's cluster and its migrated template database."""

    cluster: Cluster
    admin: _Admin

    def fresh_database(self) -> str:
        """A new, migrated, empty database; its URL."""
        name = f"t{os.getpid()}_{next(_ids)}"
        self.admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        return self.cluster.url(name)

    def drop(self, url: str) -> None:
        """Drop a test's database (in the background: the next test need not wait for it)."""
        name = url.rsplit("/", 1)[-1]
        self.admin.execute_later(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _migrate(url: str) -> None:
    ledger = PostgresLedger(url)
    await ledger.open()
    await ledger.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The run's PostgreSQL cluster (skipped loudly, or failed under CI, without the binaries)."""
    try:
        find_bin_dir()
    except PostgresUnavailable as e:
        if _ci():
            pytest.fail(f"PostgreSQL backend: {e} (CI is set, so this fails instead of skipping)")
        pytest.skip(f"PostgreSQL backend NOT TESTED: {e}")
    with throwaway_cluster() as cluster:
        url = cluster.create_database(TEMPLATE)
        asyncio.run(_migrate(url))
        admin = _Admin(cluster.url("postgres"))
        try:
            yield PgServer(cluster, admin)
        finally:
            admin.close()


@pytest.fixture(params=BACKENDS)
def ledger_backend(request: pytest.FixtureRequest) -> str:
    """Which ledger this test runs against."""
    return str(request.param)


@pytest.fixture
def database_url(ledger_backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite), or the URL of a fresh PostgreSQL database for this test."""
    if ledger_backend == "sqlite":
        yield None
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.fresh_database()
    yield url
    server.drop(url)


LedgerFactory = Callable[..., Any]


async def table_rows(db_path: pathlib.Path, database_url: str | None, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a plain SELECT, read beside the gateway: from its SQLite file, or its database."""
    if database_url is None:
        conn = sqlite3.connect(db_path, timeout=5)
        try:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
        finally:
            conn.close()
    pg = await asyncpg.connect(database_url)
    try:
        return [tuple(row) for row in await pg.fetch(sql)]
    finally:
        await pg.close()


@pytest.fixture
def make_ledger(ledger_backend: str, request: pytest.FixtureRequest) -> Iterator[LedgerFactory]:
    """``make_ledger(path, **kwargs)``: a (not yet open) ledger of this test's backend."""
    if ledger_backend == "sqlite":
        yield lambda path, **kwargs: SqliteLedger(path, **kwargs)
        return
    server: PgServer = request.getfixturevalue("pg_server")
    urls: dict[str, str] = {}
    made: list[str] = []

    def make(path: pathlib.Path | str, **kwargs: Any) -> PostgresLedger:
        key = str(path)
        if key not in urls or key == ":memory:":
            urls[key] = server.fresh_database()
            made.append(urls[key])
        return PostgresLedger(urls[key], **kwargs)

    yield make
    for url in made:
        server.drop(url)
