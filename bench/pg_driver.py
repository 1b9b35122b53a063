"""asyncpg vs psycopg 3 (+ psycopg_pool) on the PostgreSQL ledger's hot paths.

Run: ``.venv/bin/python -m bench.pg_driver`` (needs PostgreSQL's server binaries, and
``pip install 'psycopg[binary]' psycopg_pool`` for the comparison; agentgw itself needs only
asyncpg). It starts a throwaway cluster (``tools.pgcluster``), creates the ledger's schema with
the real migrations, and times, per driver, with a pool of 8 and the same SQL text:

* ``append``: one group commit of 10 events (advisory lock + 10 INSERT ... RETURNING);
* ``create``: the session-create transaction (admission lock, request_id lookup, capacity count,
  INSERT the row, INSERT its transition);
* ``page``: a replay page, 100 events after a cursor.

Each is run sequentially (latency: p50/p99 per operation) and by 8 concurrent tasks (operations
per second). CPU time of this process per operation is printed too: on a shared 2-core machine
the client's CPU is what the driver changes.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service.store.postgres import PostgresLedger
from tools.pgcluster import throwaway_cluster

ROUNDS = 400
CONCURRENCY = 8
_ids = itertools.count()

_APPEND = (
    "INSERT INTO events (session_id, instance_id, agent_id, room_id, event_type, event_time_ms,"
    " received_at, sequence, data) VALUES ($1, $2, 'a', 'r', 'llm_result', 1, $3, $4, $5) RETURNING cursor"
)
_CAPACITY = (
    "SELECT COUNT(*) FROM sessions WHERE kind = ANY($1::text[]) AND state = ANY($2::text[])"
)
_INSERT_SESSION = (
    "INSERT INTO sessions (session_id, kind, state, agent_id, user_id, room_id, agent_user_id,"
    " agent_stream_id, user_stream_id, labels, max_duration_seconds, request_id, created_at, updated_at)"
    " VALUES ($1, 'voice', 'PENDING', 'a', 'u', 'r', 'au', 'as', 'us', '{}', 60, $2, $3, $4)"
)
_TRANSITION = (
    "INSERT INTO session_transitions (session_id, from_state, to_state, at, cause)"
    " VALUES ($1, NULL, 'PENDING', $2, 'create')"
)
_PAGE = "SELECT * FROM events WHERE cursor > $1 AND hidden = 0 ORDER BY cursor LIMIT 100"
_HOLDING = ["PENDING", "STARTING", "ACTIVE", "ENDING"]


def _psycopg(sql: str) -> str:
    """The same statement with psycopg's placeholders."""
    for n in range(9, 0, -1):
        sql = sql.replace(f"${n}", "%s")
    return sql


class AsyncpgPaths:
    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> AsyncpgPaths:
        import asyncpg

        self.pool = await asyncpg.create_pool(self.url, min_size=CONCURRENCY, max_size=CONCURRENCY)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()

    async def append(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(42)")
            for _ in range(10):
                await conn.fetchval(_APPEND, "s", "i", time.time(), None, '{"n":1}')

    async def create(self) -> None:
        n = next(_ids)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(43)")
            await conn.fetchrow("SELECT * FROM sessions WHERE request_id = $1", f"r{n}")
            await conn.fetchval(_CAPACITY, ["voice"], _HOLDING)
            now = time.time()
            await conn.execute(_INSERT_SESSION, f"a{n}", f"r{n}", now, now)
            await conn.execute(_TRANSITION, f"a{n}", time.time())

    async def page(self) -> None:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_PAGE, 100)
            assert len(rows) == 100


class PsycopgPaths:
    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> PsycopgPaths:
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(self.url, min_size=CONCURRENCY, max_size=CONCURRENCY, open=False)
        await self.pool.open(wait=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()

    async def append(self) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(42)")
            for _ in range(10):
                cur = await conn.execute(_psycopg(_APPEND), ("s", "i", time.time(), None, '{"n":1}'))
                await cur.fetchone()

    async def create(self) -> None:
        n = next(_ids)
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(43)")
            await (await conn.execute(_psycopg("SELECT * FROM sessions WHERE request_id = $1"), (f"p{n}",))).fetchone()
            await (await conn.execute(_psycopg(_CAPACITY), (["voice"], _HOLDING))).fetchone()
            now = time.time()
            await conn.execute(_psycopg(_INSERT_SESSION), (f"b{n}", f"p{n}", now, now))
            await conn.execute(_psycopg(_TRANSITION), (f"b{n}", time.time()))

    async def page(self) -> None:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(_psycopg(_PAGE), (100,))).fetchall()
            assert len(rows) == 100


async def _measure(op: Callable[[], Awaitable[None]]) -> dict[str, float]:
    for _ in range(20):  # warm up: connections, prepared statements
        await op()
    latencies: list[float] = []
    cpu = time.process_time()
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await op()
        latencies.append((time.perf_counter() - started) * 1000)
    cpu_ms = (time.process_time() - cpu) * 1000 / ROUNDS
    latencies.sort()

    async def worker() -> None:
        for _ in range(ROUNDS // CONCURRENCY):
            await op()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    rate = (ROUNDS // CONCURRENCY) * CONCURRENCY / (time.perf_counter() - started)
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "cpu_ms": cpu_ms,
        "ops_s": rate,
    }


async def _run(url: str) -> list[tuple[str, str, dict[str, float]]]:
    ledger = PostgresLedger(url)  # the real migrations make the real schema
    await ledger.open()
    await ledger.close()
    results: list[tuple[str, str, dict[str, float]]] = []
    drivers: list[tuple[str, Any]] = [("asyncpg", AsyncpgPaths)]
    try:
        import psycopg_pool  # noqa: F401

        drivers.append(("psycopg3", PsycopgPaths))
    except ImportError:
        print("psycopg/psycopg_pool not installed: measuring asyncpg only")
    for name, paths in drivers:
        async with paths(url) as p:
            for _ in range(12):
                await p.append()  # enough events for a full page
            for path in ("append", "create", "page"):
                results.append((name, path, await _measure(getattr(p, path))))
    return results


def main() -> None:
    """Start a cluster, measure, print a table."""
    with throwaway_cluster() as cluster:
        url = cluster.create_database("driver_bench")
        results = asyncio.run(_run(url))
    print(f"{'driver':10} {'path':8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/op':>10} {'ops/s x8':>9}")
    for name, path, r in results:
        print(
            f"{name:10} {path:8} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['cpu_ms']:10.2f} {r['ops_s']:9.0f}"
        )


if __name__ == "__main__":
    main()
