"""``python -m bench.micro``: the ledger's read and append paths in isolation (no gRPC, no HTTP).

Evidence for the report's hot-path findings, and a check for a fix: it counts aiosqlite
worker-thread round trips per operation and times

* GetSession's reads: the three ledger reads (get_session, transitions, turn_stats) and, where
  the ledger has it, ``session_view`` (all three in one statement), sequentially and 50 at a time;
* the same three SQL statements in ONE worker-thread hop (``asyncio.to_thread`` on a sqlite3
  connection of its own), and synchronously on the event loop (a primary-key read in WAL mode);
* one callback's ledger work: find_by_instance_id + append_event, the append alone, the same
  INSERT as a whole transaction in one hop, and 20 events per transaction (group commit).
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite

from bench.scenarios.resume import _event
from service.domain.model import NewSession, SessionKind, SessionState
from service.store import _events, _rows
from service.store.sqlite import SqliteLedger

_hops = [0]
_original_execute = aiosqlite.Connection._execute


async def _counting_execute(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
    _hops[0] += 1
    return await _original_execute(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]


async def _timed(name: str, op: Callable[[], Awaitable[object]], n: int, concurrency: int = 1) -> None:
    for _ in range(50):
        await op()
    _hops[0] = 0
    started = time.perf_counter()

    async def loop(count: int) -> None:
        for _ in range(count):
            await op()

    await asyncio.gather(*(loop(n // concurrency) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    done = (n // concurrency) * concurrency
    print(
        f"  {name:<58} {1e6 * elapsed / done:8.1f} us/op  {done / elapsed:8.0f} ops/s"
        f"  {_hops[0] / done:4.1f} aiosqlite hops/op"
    )


async def main() -> None:
    aiosqlite.Connection._execute = _counting_execute  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ledger.db"
        ledger = SqliteLedger(db)
        await ledger.open()
        now = time.time()
        new = NewSession(
            session_id="s" * 32,
            kind=SessionKind.VOICE,
            agent_id="a",
            user_id="u",
            room_id="r",
            agent_user_id="ag_u",
            agent_stream_id="ag_u_main",
            user_stream_id="u_stream",
            labels={"team": "bench"},
            max_duration_seconds=3600,
            request_id=None,
            request_hash=None,
            created_at=now,
            cdn_url=None,
        )
        await ledger.reserve_session(new, 1000)
        sid = new.session_id

        async def three_reads() -> None:
            await ledger.get_session(sid)
            await ledger.transitions(sid)
            await ledger.turn_stats(sid)

        side = sqlite3.connect(db, check_same_thread=False)
        side.row_factory = sqlite3.Row
        sql = (
            (f"{_rows.SESSION_SELECT} WHERE session_id = ?", (sid,)),
            ("SELECT * FROM session_transitions WHERE session_id = ? ORDER BY id", (sid,)),
            ("SELECT outcome, latency_ms, budget_exceeded FROM turns WHERE session_id = ?", (sid,)),
        )

        def read_sync() -> list[list[sqlite3.Row]]:
            return [side.execute(q, p).fetchall() for q, p in sql]

        async def one_hop() -> None:
            await asyncio.to_thread(read_sync)

        async def on_loop() -> None:
            read_sync()

        async def view() -> None:
            await ledger.session_view(sid)

        print("GetSession's reads (one session, no turns):")
        for concurrency in (1, 50):
            await _timed(
                f"get_session + transitions + turn_stats, c={concurrency}", three_reads, 4000, concurrency
            )
            if hasattr(ledger, "session_view"):
                await _timed(f"session_view (one statement), c={concurrency}", view, 4000, concurrency)
            await _timed(f"same SQL, one thread hop, c={concurrency}", one_hop, 4000, concurrency)
            await _timed(f"same SQL, on the event loop, c={concurrency}", on_loop, 4000, concurrency)
        numbers = iter(range(10**6))

        async def ingest_ledger() -> None:
            await ledger.find_by_instance_id("1921825797275873300")
            await ledger.append_event(_event(next(numbers)))

        async def append_only() -> None:
            await ledger.append_event(_event(next(numbers)))

        writer = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        writer.execute("PRAGMA synchronous=NORMAL")

        def transaction(count: int) -> None:
            writer.execute("BEGIN IMMEDIATE")
            writer.executemany(
                _events._INSERT, [_events._params(_event(next(numbers))) for _ in range(count)]
            )
            writer.execute("COMMIT")

        async def append_one_hop() -> None:
            await asyncio.to_thread(transaction, 1)

        async def group_of_20() -> None:
            await asyncio.to_thread(transaction, 20)

        print("One callback's ledger work:")
        await _timed("find_by_instance_id + append_event (as ingest)", ingest_ledger, 3000)
        await _timed("append_event alone", append_only, 3000)
        await _timed("same INSERT, whole transaction in one thread hop", append_one_hop, 3000)
        await _timed("group commit: one op = 20 events in one transaction, one hop", group_of_20, 300)
        writer.close()
        state = await ledger.get_session(sid)
        assert state is not None and state.state is SessionState.PENDING
        side.close()
        await ledger.close()


if __name__ == "__main__":
    asyncio.run(main())
