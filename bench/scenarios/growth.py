"""Scenario 8, growth: a ledger holding 1,000,000 ended sessions and 10,000,000 events against an
(almost) empty one, on SQLite and on PostgreSQL.

The ledger is filled by bulk insert, never through the API: one real session (created, given one
LLMResult callback, ended) and its event are the templates, and SQL copies them with new ids
and older times (``INSERT ... SELECT`` over ``generate_series`` on PostgreSQL, over a recursive
CTE on SQLite, in chunks). Whatever columns the schema has are copied from the template, so the
rows are what the gateway writes. Events get increasing ``received_at`` with their cursor, as a
real log does, spread over the 28 hours before the run.

The same gateway is measured on the small ledger (the templates plus ``SMALL_SESSIONS`` sessions
and ``resume_events`` events), then on the full one (the same rows first, then the rest):

* GetSession p50 of random ended sessions, one call at a time;
* ListSessions first page (100) p50;
* resume: WatchEvents after the oldest cursor, ``resume_events`` events in batches of 250 (the
  very same events in both ledgers), events/s;
* retention purge: while callbacks are POSTed one at a time, the ledger's own purge
  (``purge_events``, in batches: what the retention loop runs once a minute) deletes the oldest minute of the
  log's events (the steady state) from the benchmark's process; the slowest callback round trip
  during the purge minus the p50 before it is the stall, and a callback refused meanwhile (a 503:
  the ledger was busy) is counted. An info row repeats it for a catch-up purge of 10% of the log
  (after a long downtime).

Targets: each full-ledger figure within 1.2x of the small ledger's; the steady purge stalls
ingest by <= 50 ms and makes the gateway refuse no callback. The sizes are ``--growth-sessions``
and ``--growth-events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as events_api
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as events_rpc
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as sessions_api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as sessions_rpc
from bench.clients import CALLBACK_PATH, channel_options
from bench.processes import Gateway, start_gateway
from bench.report import Row
from bench.scenarios.common import Context, LiveSession, create_session
from bench.stats import summary
from tools.pgcluster import find_bin_dir, throwaway_cluster

NAME = "8 growth"
SMALL_SESSIONS = 100
SAMPLES = 300
BATCH = 250
SPAN_SECONDS = 28 * 3600.0
"""The filled rows' times spread over this long before the run."""
CHUNK = 1_000_000
"""Rows per INSERT statement (one transaction each)."""
PURGE_INTERVAL_SECONDS = 60.0
"""service.core's retention loop runs once a minute: a steady-state purge removes a minute of log."""
SESSION_PREFIX = "growth-s-"
GATEWAY_ENV = {
    "AGENTGW_END_CONFIRM_SECONDS": "0.2",
    # The gateway's own retention loop must not purge the filled log (28 h) when it starts: the
    # scenario runs the purge itself, at the moment it measures.
    "AGENTGW_EVENT_RETENTION_SECONDS": str(7 * 86400),
}


# -- the fill ---------------------------------------------------------------------------------------


@dataclass
class Dialect:
    """How to reach one ledger's SQL and the few spellings that differ."""

    name: str
    execute: Callable[[str], Awaitable[list[tuple[str, ...]]]]
    """Run SQL, return its rows as text."""

    def series(self, lo: int, hi: int) -> tuple[str, str]:
        """(a WITH prefix, a FROM item) giving ``n.i`` from ``lo`` to ``hi``."""
        if self.name == "sqlite":
            return (
                f"WITH RECURSIVE n(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM n WHERE i < {hi}) ",
                "n",
            )
        return "", f"generate_series({lo}, {hi}) AS n(i)"

    async def columns(self, table: str) -> dict[str, str]:
        """Column name -> declared type (lower case), in table order."""
        if self.name == "sqlite":
            rows = await self.execute(f"SELECT name, lower(type) FROM pragma_table_info('{table}')")
        else:
            rows = await self.execute(
                "SELECT column_name, lower(data_type) || '|' || coalesce(column_default, '') || '|' "
                f"|| is_identity FROM information_schema.columns WHERE table_name = '{table}' "
                "AND table_schema = current_schema() ORDER BY ordinal_position"
            )
        return {name: kind for name, kind in rows}


def sqlite_dialect(db_path: Path) -> Dialect:
    def run(sql: str) -> list[tuple[str, ...]]:
        with contextlib.closing(sqlite3.connect(db_path, timeout=60)) as conn:
            rows = conn.execute(sql).fetchall()
            conn.commit()
            return [tuple("" if v is None else str(v) for v in row) for row in rows]

    async def execute(sql: str) -> list[tuple[str, ...]]:
        return await asyncio.to_thread(run, sql)

    return Dialect("sqlite", execute)


def postgres_dialect(url: str) -> Dialect:
    psql = find_bin_dir() / "psql"

    def run(sql: str) -> list[tuple[str, ...]]:
        command = [str(psql) if psql.exists() else "psql", "-X", "-q", "-t", "-A", "-F", "\t"]
        command += ["-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()[-2000:]}")
        return [tuple(line.split("\t")) for line in done.stdout.splitlines() if line]

    async def execute(sql: str) -> list[tuple[str, ...]]:
        return await asyncio.to_thread(run, sql)

    return Dialect("postgres", execute)


def _is_time(kind: str) -> bool:
    return kind.startswith("timestamp")


def _older(dialect: Dialect, column: str, kind: str, seconds: str) -> str:
    """``t.column`` moved ``seconds`` (an SQL expression) into the past, whatever its type."""
    if dialect.name == "postgres" and _is_time(kind):
        return f"t.{column} - ({seconds}) * interval '1 second'"
    return f"t.{column} - ({seconds})"


def _text(dialect: Dialect, kind: str, expr: str) -> str:
    if dialect.name == "postgres" and kind.startswith("uuid"):
        return f"md5({expr})::uuid"
    return expr


async def _copy(
    dialect: Dialect,
    table: str,
    template_where: str,
    varied: Callable[[str, str], str | None],
    lo: int,
    hi: int,
    skip: frozenset[str] = frozenset(),
) -> None:
    """Insert rows ``lo..hi`` into ``table``: the template row with ``varied(column, type)`` where
    it gives an expression, in chunks of :data:`CHUNK`."""
    columns = await dialect.columns(table)
    names = [c for c in columns if c not in skip]
    exprs = [varied(c, columns[c]) or f"t.{c}" for c in names]
    for start in range(lo, hi + 1, CHUNK):
        end = min(hi, start + CHUNK - 1)
        with_, series = dialect.series(start, end)
        await dialect.execute(
            f"{with_}INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(exprs)} "
            f"FROM {series}, (SELECT * FROM {table} WHERE {template_where}) AS t"
        )


async def fill(
    dialect: Dialect,
    *,
    template_session: str,
    template_cursor: int,
    sessions: tuple[int, int],
    events: tuple[int, int],
    total_sessions: int,
    total_events: int,
) -> float:
    """Copy the template session to sessions ``sessions[0]..sessions[1]`` and the template event to
    events ``events[0]..events[1]`` (numbered 1..total); returns the seconds it took."""
    started = time.perf_counter()

    def session_column(column: str, kind: str) -> str | None:
        age = f"{SPAN_SECONDS} * ({total_sessions} - n.i + 1) / {total_sessions} + 60"
        return {
            "session_id": _text(dialect, kind, f"'{SESSION_PREFIX}' || n.i"),
            "request_id": "NULL",
            "request_hash": "NULL",
            "instance_id": "'9' || n.i",
            "room_id": "'growth_room_' || n.i",
            "agent_user_id": "'ag_growth_' || n.i",
            "created_at": _older(dialect, column, kind, age),
            "updated_at": _older(dialect, column, kind, age),
            "started_at": _older(dialect, column, kind, age),
            "ended_at": _older(dialect, column, kind, age),
        }.get(column)

    def event_column(column: str, kind: str) -> str | None:
        age = f"{SPAN_SECONDS} * ({total_events} - n.i + 1) / {total_events} + 60"
        session = f"(1 + n.i % {total_sessions})"
        return {
            "session_id": _text(dialect, kind, f"'{SESSION_PREFIX}' || {session}"),
            "instance_id": f"'9' || {session}",
            "room_id": f"'growth_room_' || {session}",
            "agent_user_id": f"'ag_growth_' || {session}",
            "sequence": "n.i",
            "raw": "NULL",  # optional (include_raw), and 10 M copies of it would be gigabytes
            "received_at": _older(dialect, column, kind, age),
            "event_time_ms": f"t.event_time_ms - CAST(1000 * ({age}) AS BIGINT)",
        }.get(column)

    if sessions[1] >= sessions[0]:
        await _copy(dialect, "sessions", f"session_id = '{template_session}'", session_column, *sessions)
    if events[1] >= events[0]:
        cursor_kind = (await dialect.columns("events")).get("cursor", "")
        skip = frozenset({"cursor"}) if _generated(dialect, cursor_kind) else frozenset()
        if not skip:
            raise RuntimeError(f"events.cursor is not generated ({cursor_kind!r}): teach the fill")
        await _copy(dialect, "events", f"cursor = {template_cursor}", event_column, *events, skip=skip)
    if dialect.name == "postgres":
        await dialect.execute("ANALYZE")
    return time.perf_counter() - started


def _generated(dialect: Dialect, kind: str) -> bool:
    if dialect.name == "sqlite":
        return True  # INTEGER PRIMARY KEY AUTOINCREMENT
    _, default, identity = [*kind.split("|"), "", ""][:3]
    return identity == "YES" or default.startswith("nextval(")


# -- the measurements -------------------------------------------------------------------------------


async def _p50(call: Callable[[], Awaitable[Any]], samples: int) -> dict[str, float]:
    for _ in range(10):  # warm-up
        await call()
    latencies = []
    for _ in range(samples):
        started = time.perf_counter()
        await call()
        latencies.append(1000 * (time.perf_counter() - started))
    return summary(latencies)


async def measure_reads(
    target: str, session_ids: list[str], resume_count: int, samples: int
) -> dict[str, Any]:
    """GetSession and ListSessions p50, and the resume rate after the oldest cursor."""
    rng = random.Random(7)
    async with grpc.aio.insecure_channel(target, options=channel_options()) as channel:
        sessions = sessions_rpc.SessionServiceStub(channel)
        events = events_rpc.EventServiceStub(channel)

        async def get() -> None:
            request = sessions_api.GetSessionRequest(session_id=rng.choice(session_ids))
            await sessions.GetSession(request, timeout=10)

        async def first_page() -> None:
            await sessions.ListSessions(sessions_api.ListSessionsRequest(page_size=100), timeout=10)

        get_session = await _p50(get, samples)
        list_sessions = await _p50(first_page, max(20, samples // 3))
        oldest = await events.ListEvents(events_api.ListEventsRequest(page_size=1), timeout=30)
        after = max(0, oldest.events[0].cursor - 1) if oldest.events else 0
        request = events_api.WatchEventsRequest(
            start=events_api.START_POSITION_AFTER_CURSOR, after_cursor=after, max_batch_size=BATCH
        )
        received = 0
        started = time.perf_counter()
        call = events.WatchEvents(request)
        async with asyncio.timeout(300):
            async for item in call:
                kind = item.WhichOneof("item")
                received += 1 if kind == "event" else len(item.batch.events) if kind == "batch" else 0
                if received >= resume_count:
                    break
        elapsed = time.perf_counter() - started
        call.cancel()
    return {
        "get_session": get_session,
        "list_sessions": list_sessions,
        "resume_rate": received / elapsed,
        "resumed": received,
    }


async def measure_purge(
    gw: Gateway, session: LiveSession, purge: Callable[[], Awaitable[int]]
) -> dict[str, Any]:
    """Callbacks one at a time before and while ``purge`` runs; the stall it caused.

    A callback the gateway refuses during the purge (a 503: the ledger was busy; ZEGO would retry
    it 2 s later) is counted, and its round trip counts as a stall like a slow one."""
    async with httpx.AsyncClient(base_url=gw.http_url, timeout=30) as client:
        refused: list[int] = []

        async def one() -> float:
            started = time.perf_counter()
            response = await client.post(CALLBACK_PATH, content=session.body("purge"))
            if response.status_code != 200:
                refused.append(response.status_code)
            return 1000 * (time.perf_counter() - started)

        before = [await one() for _ in range(100)]
        refused_before = len(refused)
        task = asyncio.create_task(purge())
        started = time.perf_counter()
        during: list[float] = []
        while not task.done() and len(during) < 1_000_000:
            during.append(await one())
        removed = await task
        seconds = time.perf_counter() - started
        during.append(await one())  # the one that waited for the purge's end, if any
    p50 = summary(before)["p50"]
    return {
        "removed": removed,
        "purge_seconds": seconds,
        "before_p50_ms": p50,
        "during_max_ms": max(during),
        "stall_ms": max(0.0, max(during) - p50),
        "callbacks_during": len(during),
        "refused_before": refused_before,
        "refused_during": len(refused) - refused_before,
        "refused_statuses": sorted(set(refused)),
    }


# -- one backend ------------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    dialect: Dialect
    env: dict[str, str]
    db_path: Path
    purge: Callable[[float], Awaitable[int]]
    """The ledger's retention purge of events received before a time; rows removed."""


def sqlite_backend(db_path: Path) -> Backend:
    from service.store import _events

    def purge(before: float) -> int:
        # As SqliteLedger.purge_events: batches of PURGE_BATCH, one write transaction each. The
        # ledger yields to its own appends between batches; from this other process, a short pause
        # lets the gateway's busy handler take the lock between them.
        with contextlib.closing(sqlite3.connect(db_path, timeout=60, isolation_level=None)) as conn:
            through = _events.purge_target(conn, before)
            removed = 0
            while through is not None:
                conn.execute("BEGIN IMMEDIATE")  # as SqliteLedger's transactions: the write lock first
                try:
                    count, done = _events.purge_batch(conn, through)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                removed += count
                if done:
                    break
                time.sleep(0.005)
            return removed

    async def run(before: float) -> int:
        return await asyncio.to_thread(purge, before)

    return Backend("sqlite", sqlite_dialect(db_path), {}, db_path, run)


def postgres_backend(url: str, db_path: Path) -> Backend:
    dialect = postgres_dialect(url)

    async def run(before: float) -> int:
        return await postgres_purge(url, before)

    return Backend("postgres", dialect, {"AGENTGW_DATABASE_URL": url}, db_path, run)


async def postgres_purge(url: str, before: float) -> int:
    """The PostgreSQL ledger's own retention purge (in batches, one transaction each, as
    ``PostgresLedger.purge_events`` runs it), on a connection of its own."""
    import asyncpg

    from service.store.postgres import events as pg_events

    conn = await asyncpg.connect(url)
    try:
        through = await pg_events.purge_target(conn, before)
        removed = 0
        while through is not None:
            async with conn.transaction():
                count, done = await pg_events.purge_batch(conn, through)
            removed += count
            if done:
                break
        return removed
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _gateway(ctx: Context, backend: Backend) -> AsyncIterator[Gateway]:
    gw = await start_gateway(ctx.procs, ctx.emulator_url, backend.db_path, {**GATEWAY_ENV, **backend.env})
    try:
        yield gw
    finally:
        await ctx.procs.stop(gw.proc)


async def _templates(ctx: Context, backend: Backend) -> tuple[str, int]:
    """One ended session with one logged LLMResult: the rows the fill copies."""
    async with _gateway(ctx, backend) as gw:
        live = await create_session(gw, user="growth_template")
        async with httpx.AsyncClient(base_url=gw.http_url, timeout=10) as client:
            (await client.post(CALLBACK_PATH, content=live.body("template"))).raise_for_status()
        async with grpc.aio.insecure_channel(gw.grpc_target, options=channel_options()) as channel:
            stub = sessions_rpc.SessionServiceStub(channel)
            await stub.EndSession(sessions_api.EndSessionRequest(session_id=live.session_id), timeout=10)
            for _ in range(100):  # bounded: 10 s until ENDED (no ZEGO callback comes: confirm timeout)
                got = await stub.GetSession(sessions_api.GetSessionRequest(session_id=live.session_id))
                if got.session.end_reason:
                    break
                await asyncio.sleep(0.1)
            listed = await events_rpc.EventServiceStub(channel).ListEvents(
                events_api.ListEventsRequest(page_size=100), timeout=10
            )
    cursors = [e.cursor for e in listed.events if e.sequence and e.WhichOneof("payload") == "llm_result"]
    if not cursors:
        raise RuntimeError("the template LLMResult was not logged")
    return live.session_id, cursors[0]


async def measure_backend(ctx: Context, backend: Backend, sessions: int, events: int) -> dict[str, Any]:
    """Small ledger, then full ledger (same gateway settings): reads, resume, purge stall."""
    resume = min(ctx.params.resume_events, events)
    template_session, template_cursor = await _templates(ctx, backend)
    fill_args = {"template_session": template_session, "template_cursor": template_cursor}
    totals = {"total_sessions": sessions, "total_events": events}
    small_sessions = min(SMALL_SESSIONS, sessions)
    seconds = [
        await fill(backend.dialect, **fill_args, **totals, sessions=(1, small_sessions), events=(1, resume))
    ]
    ids = [f"{SESSION_PREFIX}{i}" for i in range(1, small_sessions + 1)]
    async with _gateway(ctx, backend) as gw:
        small = await measure_reads(gw.grpc_target, ids, resume, SAMPLES)
    print(f"  {backend.name}: small ledger measured; filling {sessions:,} sessions, {events:,} events")
    seconds.append(
        await fill(
            backend.dialect,
            **fill_args,
            **totals,
            sessions=(small_sessions + 1, sessions),
            events=(resume + 1, events),
        )
    )
    print(f"  {backend.name}: filled in {sum(seconds):.0f} s")
    rng = random.Random(11)
    ids = [f"{SESSION_PREFIX}{rng.randint(1, sessions)}" for _ in range(1000)]
    async with _gateway(ctx, backend) as gw:
        full = await measure_reads(gw.grpc_target, ids, resume, SAMPLES)
        live = await create_session(gw, user="growth_ingest")
        # From the ledger, not the clock: the fill itself took minutes.
        ((first,),) = await backend.dialect.execute("SELECT MIN(received_at) FROM events")
        oldest = float(first)
        steady = await measure_purge(gw, live, lambda: backend.purge(oldest + PURGE_INTERVAL_SECONDS))
        catch_up = await measure_purge(gw, live, lambda: backend.purge(oldest + 0.1 * SPAN_SECONDS))
    return {
        "sessions": sessions,
        "events": events,
        "fill_seconds": round(sum(seconds), 1),
        "small": small,
        "full": full,
        "steady_purge": steady,
        "catch_up_purge": catch_up,
    }


def _rows(ctx: Context, name: str, out: dict[str, Any]) -> None:
    add = ctx.report.add
    small, full = out["small"], out["full"]
    size = f"{out['sessions']:,} sessions, {out['events']:,} events"
    for metric, key in (("GetSession p50", "get_session"), ("ListSessions first page p50", "list_sessions")):
        ratio = full[key]["p50"] / small[key]["p50"]
        add(Row(NAME, f"{name} {metric} ({size})", full[key]["p50"], small[key]["p50"], "ms",
                "<= 1.2x empty", ratio <= 1.2))  # fmt: skip
    add(
        Row(
            NAME,
            f"{name} resume after the oldest cursor ({out['small']['resumed']:,} events)",
            full["resume_rate"],
            small["resume_rate"],
            "/s",
            ">= empty / 1.2",
            full["resume_rate"] * 1.2 >= small["resume_rate"],
        )
    )
    steady, catch_up = out["steady_purge"], out["catch_up_purge"]
    add(
        Row(
            NAME,
            f"{name} ingest stall, purge of a minute ({steady['removed']:,} events, "
            f"{steady['refused_during']} refused)",
            steady["stall_ms"],
            steady["before_p50_ms"],
            "ms",
            "<= 50 ms, none refused",
            steady["stall_ms"] <= 50.0 and steady["refused_during"] == 0,
        )
    )
    add(
        Row(
            NAME,
            f"{name} ingest stall, catch-up purge ({catch_up['removed']:,} events, "
            f"{catch_up['refused_during']} refused)",
            catch_up["stall_ms"],
            catch_up["before_p50_ms"],
            "ms",
        )
    )


async def run(ctx: Context) -> None:
    sessions, events = ctx.params.growth_sessions, ctx.params.growth_events
    details: dict[str, Any] = {}
    db_dir = ctx.workdir / "db-growth"
    os.makedirs(db_dir, exist_ok=True)
    try:
        details["sqlite"] = await measure_backend(ctx, sqlite_backend(db_dir / "ledger.db"), sessions, events)
        _rows(ctx, "SQLite", details["sqlite"])
    finally:
        for leftover in db_dir.glob("ledger.db*"):
            leftover.unlink()
    with throwaway_cluster() as cluster:
        url = cluster.create_database("growth")
        backend = postgres_backend(url, db_dir / "unused.db")
        details["postgres"] = await measure_backend(ctx, backend, sessions, events)
        _rows(ctx, "PostgreSQL", details["postgres"])
    ctx.report.details["growth"] = details
