"""The fleet runtime on the PostgreSQL ledger: two replicas' ledgers on one database.

Ledger A and ledger B stand for two replicas (each has its own pool, event log and bus); they
share nothing but the database, as two processes would.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.domain.event_log import EventBus, EventLog, Subscription
from service.domain.events import EventFilter, EventType, NewEvent
from service.domain.model import NewSession, SessionKind, SessionState
from service.domain.shared_turns import FleetLatencyTracker
from service.store.pg_feed import PgEventTailer, PgLogReader
from service.store.pg_replicas import PgReplicaRegistry, pool_options
from service.store.postgres import PoolOptions, PostgresLedger
from tests.domain.test_latency import Recorder

SID = "s1"
_seq = itertools.count(1)


def _new_session(sid: str, at: float = 0.0) -> NewSession:
    return NewSession(
        sid, SessionKind.VOICE, "a", "u", "r", f"au-{sid}", "as", "us", {"t": "x"}, 60, None, None, at
    )


def _event(kind: EventType, round_: int, at_ms: int, sid: str = SID, **data: Any) -> NewEvent:
    return NewEvent(kind, sid, "i1", "a", "r", at_ms, time.time(), next(_seq), round_, data)


@pytest.fixture
async def ledgers(pg_url: str) -> AsyncIterator[tuple[PostgresLedger, PostgresLedger]]:
    a = PostgresLedger(pg_url, options=pool_options("replica-a", PoolOptions(max_size=4)))
    b = PostgresLedger(pg_url, options=pool_options("replica-b", PoolOptions(max_size=4)))
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def _take(sub: Subscription, n: int, within: float = 10.0) -> list[int]:
    got: list[int] = []
    deadline = time.monotonic() + within
    while len(got) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"{len(got)} of {n} events arrived"
        event = await sub.next(timeout=left)
        if event is not None:
            got.append(event.cursor)
    return got


async def test_an_event_appended_through_a_reaches_a_subscriber_on_b(
    pg_url: str, ledgers: tuple[PostgresLedger, PostgresLedger]
) -> None:
    a, b = ledgers
    await a.reserve_session(_new_session(SID), 10)
    async with EventBus() as bus_a, EventBus() as bus_b:
        log_a = EventLog(a, bus_a, publish=False)
        await log_a.start()
        tailer_b = PgEventTailer(pg_url, PgLogReader(b.database), bus_b, poll_seconds=30.0)
        async with tailer_b:
            with (
                bus_b.subscribe(EventFilter(session_ids=frozenset({SID}))) as sub,
                bus_a.subscribe(EventFilter()) as local,
            ):
                for _ in range(30):
                    if tailer_b.listening:
                        break
                    await asyncio.sleep(0.05)
                stored = await log_a.append(_event(EventType.AGENT_STATUS, 1, 1000, status="THINKING"))
                assert stored is not None
                # Woken by NOTIFY (the poll is 30 s away).
                assert await _take(sub, 1, within=5.0) == [stored.cursor]
                assert bus_b.head == stored.cursor
                assert await local.next(timeout=0.2) is None  # A did not publish it itself


async def test_concurrent_appends_on_two_replicas_arrive_in_cursor_order_without_gaps(
    pg_url: str, ledgers: tuple[PostgresLedger, PostgresLedger]
) -> None:
    a, b = ledgers
    await a.reserve_session(_new_session(SID), 10)
    async with EventBus(queue_size=10_000) as bus:
        log_a, log_b = EventLog(a, EventBus(), publish=False), EventLog(b, EventBus(), publish=False)
        async with PgEventTailer(pg_url, PgLogReader(b.database), bus, poll_seconds=0.2, batch=7):
            with bus.subscribe(EventFilter()) as sub:

                async def writer(log: EventLog, n: int) -> None:
                    for _ in range(n):
                        await log.append(_event(EventType.AGENT_STATUS, 1, 1, status="IDLE"))
                        await asyncio.sleep(random.random() / 200)

                await asyncio.gather(*(writer(log, 40) for log in (log_a, log_b, log_a, log_b)))
                got = await _take(sub, 160, within=20.0)
    stored = [e.cursor for e in await a.events_after(0, 1000, EventFilter())]
    assert got == stored and got == sorted(got) and len(set(got)) == 160


async def test_a_turn_started_on_a_and_spoken_on_b_is_measured_once(
    pg_url: str, ledgers: tuple[PostgresLedger, PostgresLedger]
) -> None:
    """Two trackers on two ledgers, each fed by its own tailer; only the lease holder (A) records."""
    a, b = ledgers
    await a.reserve_session(_new_session(SID, time.time()), 10)
    await a.start_session(SID, at=time.time(), instance_id="i1")
    rec_a, rec_b = Recorder(), Recorder()
    async with EventBus() as bus_a, EventBus() as bus_b:
        log_a, log_b = EventLog(a, bus_a, publish=False), EventLog(b, bus_b, publish=False)
        tracker_a = FleetLatencyTracker(a, log_a, rec_a, recording=lambda: True)
        tracker_b = FleetLatencyTracker(b, log_b, rec_b, recording=lambda: False)
        tail_a = PgEventTailer(
            pg_url, PgLogReader(a.database), bus_a, observers=[tracker_a.feed], poll_seconds=0.2
        )
        tail_b = PgEventTailer(
            pg_url, PgLogReader(b.database), bus_b, observers=[tracker_b.feed], poll_seconds=0.2
        )
        async with tracker_a, tracker_b, tail_a, tail_b:
            # SendText arrives at B (B logs its turn start), SPEAKING is posted to A.
            now = float(int(time.time()))  # whole seconds: the latency below is exact
            tracker_b.api_turn(SID, "send_text", 5, now)
            await tracker_b.drain()
            await log_a.append(_event(EventType.AGENT_STATUS, 5, int(now * 1000) + 800, status="SPEAKING"))
            # A user turn whose two halves reach different replicas too.
            await log_b.append(_event(EventType.USER_SPEECH, 6, 500_000, action="SPEAK_END"))
            await log_a.append(_event(EventType.AGENT_STATUS, 6, 501_900, status="SPEAKING"))
            for _ in range(100):
                if len(rec_a.turns) == 2:
                    break
                await asyncio.sleep(0.05)
            await tracker_a.drain()
            await tracker_b.drain()
    assert rec_a.turns == [("voice", "send_text", 0.8, False), ("voice", "user_speech", 1.9, True)]
    assert rec_b.turns == []  # B tracked them too, but does not hold the lease
    view = await b.session_view(SID)
    assert view is not None and view[2].turns == 2
    breaches = await b.events_after(
        0, 100, EventFilter(event_types=frozenset({EventType.LATENCY_BUDGET_EXCEEDED}))
    )
    assert [e.round for e in breaches] == [6]
    # The turn start is in the log, hidden: no subscriber and no replay sees it.
    assert all(e.data.get("status") != "TURN_STARTED" for e in await b.events_after(0, 100, EventFilter()))


async def test_pending_rows_record_their_creator_and_only_live_creators_keep_them(
    ledgers: tuple[PostgresLedger, PostgresLedger],
) -> None:
    a, b = ledgers
    await a.reserve_session(_new_session("from-a"), 10)
    await b.reserve_session(_new_session("from-b"), 10)
    creators = {
        r[0]: r[1]
        for r in await a.database.fetch("SELECT session_id, creator FROM sessions ORDER BY session_id")
    }
    assert creators == {"from-a": "replica-a", "from-b": "replica-b"}
    reg_a = PgReplicaRegistry(a.database, "replica-a", heartbeat_seconds=0.1, ttl_seconds=0.6)
    reg_b = PgReplicaRegistry(b.database, "replica-b", heartbeat_seconds=0.1, ttl_seconds=0.6)
    async with reg_a:
        async with reg_b:
            assert await reg_a.live_replicas() == ["replica-a", "replica-b"]
            assert await reg_a.in_flight_elsewhere("from-b")  # B is alive: its create, not A's row
            assert not await reg_a.in_flight_elsewhere("from-a")  # A's own: A knows its in-flight set
            assert not await reg_a.in_flight_elsewhere("missing")
        # B stopped cleanly (row deleted): its PENDING row is A's to resolve at once.
        assert not await reg_a.in_flight_elsewhere("from-b")
        # A replica that dies without deregistering is dead once its heartbeat is older than the ttl.
        await b.database.execute(
            "INSERT INTO replicas VALUES ('replica-b', 0, extract(epoch FROM clock_timestamp()), 0)"
        )
        assert await reg_a.in_flight_elsewhere("from-b")
        await asyncio.sleep(0.8)
        assert not await reg_a.in_flight_elsewhere("from-b")
        record = await a.get_session("from-b")
        assert record is not None and record.state is SessionState.PENDING
