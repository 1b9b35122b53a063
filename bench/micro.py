"""``python -m bench.micro``: the ledger's hot paths in isolation (no gRPC, no HTTP).

Evidence for the report's hot-path findings, and a check for a fix: it counts ledger
transactions per operation (``service.store._db``) and times

* GetSession's read (``session_view``: one statement), 1 and 50 at a time;
* a CreateSession's ledger work (reserve + STARTING) and an EndSession's (ENDING + ENDED with its
  event), one transaction each;
* one callback's ledger work: find_by_instance_id + append_event, and appends in groups of 20
  (what ``EventLog.append``'s group commit does under load).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.scenarios.resume import _event
from service.domain.events import EventType, NewEvent
from service.domain.model import NewSession, SessionKind, SessionState
from service.store._db import Database
from service.store.sqlite import SqliteLedger

_transactions = [0]
_original_transaction = Database.transaction


def _counting_transaction(self: Database, fn: Any) -> Any:
    _transactions[0] += 1
    return _original_transaction(self, fn)


async def _timed(name: str, op: Callable[[], Awaitable[object]], n: int, concurrency: int = 1) -> None:
    for _ in range(50):
        await op()
    _transactions[0] = 0
    started = time.perf_counter()
    cpu = time.process_time()

    async def loop(count: int) -> None:
        for _ in range(count):
            await op()

    await asyncio.gather(*(loop(n // concurrency) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    done = (n // concurrency) * concurrency
    print(
        f"  {name:<52} {1e6 * elapsed / done:8.1f} us/op {1e6 * cpu / done:8.1f} us CPU/op"
        f"  {done / elapsed:8.0f} ops/s  {_transactions[0] / done:4.1f} transactions/op"
    )


def _new(n: int, now: float) -> NewSession:
    return NewSession(
        session_id=f"{n:032d}",
        kind=SessionKind.VOICE,
        agent_id="a",
        user_id="u",
        room_id="r",
        agent_user_id=f"ag_u{n}",
        agent_stream_id=f"ag_u{n}_main",
        user_stream_id="u_stream",
        labels={"team": "bench"},
        max_duration_seconds=3600,
        request_id=None,
        request_hash=None,
        created_at=now,
        cdn_url=None,
    )


async def main() -> None:
    Database.transaction = _counting_transaction  # type: ignore[method-assign]
    S = SessionState
    with tempfile.TemporaryDirectory() as tmp:
        ledger = SqliteLedger(Path(tmp) / "ledger.db")
        await ledger.open()
        now = time.time()
        await ledger.reserve_session(_new(0, now), 10**6)
        sid = _new(0, now).session_id

        async def view() -> None:
            await ledger.session_view(sid)

        print("GetSession's read:")
        for concurrency in (1, 50):
            await _timed(f"session_view, c={concurrency}", view, 4000, concurrency)

        numbers = iter(range(1, 10**6))

        async def create() -> None:
            new = _new(next(numbers), now)
            await ledger.reserve_session(new, 10**6)
            await ledger.transition(
                new.session_id,
                S.STARTING,
                expected=frozenset({S.PENDING}),
                at=now,
                cause="bench",
                updates={"instance_id": str(new.session_id)},
            )

        async def end() -> None:
            new = _new(next(numbers), now)
            await ledger.reserve_session(new, 10**6)
            await ledger.transition(
                new.session_id, S.ENDING, expected=frozenset({S.PENDING}), at=now, cause="bench"
            )
            ended = NewEvent(EventType.ENDED, new.session_id, None, "a", "r", 0, now, None, None, {})
            await ledger.transition_with_event(
                new.session_id, S.ENDED, expected=frozenset({S.ENDING}), at=now, cause="bench", event=ended
            )

        print("Sessions' ledger work:")
        await _timed("reserve + STARTING (a create)", create, 2000)
        await _timed("reserve + ENDING + ENDED with event", end, 2000)
        await _timed("reserve + STARTING, c=10", create, 2000, 10)

        async def ingest_ledger() -> None:
            await ledger.find_by_instance_id("1921825797275873300")
            await ledger.append_event(_event(next(numbers)))

        async def group_of_20() -> None:
            await ledger.append_events([_event(next(numbers)) for _ in range(20)])

        print("One callback's ledger work:")
        await _timed("find_by_instance_id + append_event (as ingest)", ingest_ledger, 3000)
        await _timed("one op = 20 events in one transaction", group_of_20, 300)
        await ledger.close()


if __name__ == "__main__":
    asyncio.run(main())
