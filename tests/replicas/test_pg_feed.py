"""The tailer: the shared log reaches the local bus in cursor order, woken by NOTIFY, and a lost
NOTIFY (the LISTEN connection killed) is recovered by the tailer's own periodic read.

These tests drive the tailer with a minimal log table of their own, so they exercise LISTEN/NOTIFY
and the read loop alone; tests/replicas/test_fleet_ledgers.py runs it on the PostgreSQL ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from service.domain.event_log import EventBus
from service.domain.events import Event, EventFilter, EventType
from service.store.pg_feed import CHANNEL, PgEventTailer


class TableLog:
    """A serialised log (one writer at a time, as the tests append) read by cursor."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self.pool = pool

    async def append(self, n: int, *, notify: bool = True, hidden: bool = False) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            for _ in range(n):
                await conn.execute(
                    "INSERT INTO log (received_at, hidden) VALUES ($1, $2)", time.time(), hidden
                )
            if notify:
                await conn.execute("SELECT pg_notify($1, '')", CHANNEL)

    async def log_after(self, after: int, limit: int) -> Sequence[Event]:
        rows = await self.pool.fetch(
            "SELECT cursor, received_at, hidden FROM log WHERE cursor > $1 ORDER BY cursor LIMIT $2",
            after,
            limit,
        )
        return [
            Event(
                event_type=EventType.AGENT_STATUS,
                session_id="s1",
                instance_id="i1",
                agent_id="a",
                room_id="r",
                event_time_ms=0,
                received_at=row["received_at"],
                sequence=None,
                round=1,
                data={"status": "SPEAKING"},
                hidden=row["hidden"],
                cursor=row["cursor"],
            )
            for row in rows
        ]

    async def event_bounds(self) -> tuple[int, int]:
        head = await self.pool.fetchval("SELECT coalesce(max(cursor), 0) FROM log")
        return 0, int(head)


@pytest.fixture
async def table_log(pg_url: str) -> AsyncIterator[TableLog]:
    async with asyncpg.create_pool(pg_url, min_size=1, max_size=4) as pool:
        await pool.execute(
            "CREATE TABLE log (cursor bigserial PRIMARY KEY, received_at float8 NOT NULL,"
            " hidden bool NOT NULL)"
        )
        yield TableLog(pool)


async def _received(sub: Any, n: int, within: float) -> list[int]:
    cursors: list[int] = []
    deadline = time.monotonic() + within
    while len(cursors) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(cursors)} of {n} events arrived within {within} s"
        event = await sub.next(timeout=left)
        if event is not None:
            cursors.append(event.cursor)
    return cursors


async def test_notify_wakes_the_tailer_long_before_its_poll(pg_url: str, table_log: TableLog) -> None:
    await table_log.append(3)  # before the tailer starts: replayed from the ledger, not published
    async with EventBus() as bus:
        tailer = PgEventTailer(pg_url, table_log, bus, poll_seconds=30.0)
        async with tailer:
            assert bus.head == 3
            await _eventually(lambda: tailer.listening)
            with bus.subscribe(EventFilter()) as sub:
                await table_log.append(5)
                assert await _received(sub, 5, within=5.0) == [4, 5, 6, 7, 8]
            assert bus.head == 8


async def test_a_lost_notify_is_recovered_by_the_read_and_the_listener_reconnects(
    pg_url: str, table_log: TableLog
) -> None:
    poll = 0.5
    seen: list[int] = []
    async with EventBus() as bus:
        tailer = PgEventTailer(
            pg_url, table_log, bus, poll_seconds=poll, observers=[lambda e: seen.append(e.cursor)]
        )
        async with tailer:
            await _eventually(lambda: tailer.listening)
            first_pid = tailer.listen_pid
            with bus.subscribe(EventFilter()) as sub:
                # No NOTIFY at all: only the periodic read can deliver these.
                await table_log.append(2, notify=False)
                started = time.monotonic()
                assert await _received(sub, 2, within=poll + 5.0) == [1, 2]
                assert time.monotonic() - started < poll + 5.0
                # Kill the LISTEN connection, and append while it is down (its NOTIFY goes nowhere).
                async with table_log.pool.acquire() as conn:
                    assert await conn.fetchval("SELECT pg_terminate_backend($1)", first_pid)
                await table_log.append(3)
                await table_log.append(1, hidden=True)
                await table_log.append(2)
                assert await _received(sub, 5, within=poll + 6.0) == [3, 4, 5, 7, 8]  # 6 is hidden
                await _eventually(lambda: tailer.listening and tailer.listen_pid != first_pid, within=10.0)
                assert tailer.reconnects >= 1
                # NOTIFY works again on the new connection.
                await table_log.append(1)
                assert await _received(sub, 1, within=poll + 5.0) == [9]
    assert seen == list(range(1, 10))  # observers get every event, hidden included, in order


async def test_a_failing_read_is_retried(pg_url: str, table_log: TableLog) -> None:
    class Flaky:
        fail = 2

        async def log_after(self, after: int, limit: int) -> Sequence[Event]:
            if self.fail:
                self.fail -= 1
                raise OSError("connection refused")
            return await table_log.log_after(after, limit)

        async def event_bounds(self) -> tuple[int, int]:
            return await table_log.event_bounds()

    async with EventBus() as bus:
        async with PgEventTailer(pg_url, Flaky(), bus, poll_seconds=0.1):
            with bus.subscribe(EventFilter()) as sub:
                await table_log.append(2)
                assert await _received(sub, 2, within=5.0) == [1, 2]


async def _eventually(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
