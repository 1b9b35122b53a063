"""Possible leaks: they keep their slot, are retried with backoff until ZEGO confirms them gone, and
are reported as leaks after the give-up time (``service.domain.leaks``). Plus start-up adoption of
PENDING rows a callback named, and AIP-155 retries of safe-to-retry create failures."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from service.config import ReaperSettings, SessionSettings
from service.domain.event_log import EventBus, EventLog, EventMetrics
from service.domain.events import EventType, NewEvent
from service.domain.leaks import LeakPolicy
from service.domain.model import EndReason, SessionKind, SessionRecord, SessionState
from service.domain.reaper import Reaper
from service.domain.sessions import SessionService
from service.errors import CapacityExhausted
from service.metrics import Metrics
from service.store.sqlite import SqliteLedger
from service.zego import exceptions as zx
from service.zego.adapter import ZegoAdapter
from service.zego.client import ZegoClient
from tests.conftest import Emulator
from tests.domain.conftest import AGENT_ID, FakeClock, upstream_ids, voice_spec
from tests.domain.test_reaper import pending_row

S = SessionState
SETTINGS = SessionSettings(voice_limit=3, digital_human_limit=3, end_confirm_seconds=0.0)
POLICY = LeakPolicy(
    give_up_seconds=600, retry_initial_seconds=10, retry_max_seconds=40, call_timeout_seconds=2
)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(version="test")


@pytest.fixture
def sessions(zego: ZegoClient, ledger: SqliteLedger, clock: FakeClock, metrics: Metrics) -> SessionService:
    return SessionService(
        ZegoAdapter(zego),
        ledger,
        settings=SETTINGS,
        events=EventLog(ledger, EventBus(), clock=clock, observers=[EventMetrics(metrics)]),
        observer=metrics,
        leak_policy=POLICY,
        clock=clock,
    )


async def lost_create(sessions: SessionService, emulator: Emulator, **spec: Any) -> SessionRecord:
    """A create whose answer was lost (the connection dropped): FAILED, possible_leak, no id."""
    await emulator.fault(action="CreateAgentInstance", mode="drop", count=1)
    with pytest.raises(zx.ZegoTransportError):
        await sessions.create(voice_spec(**spec))
    (row,) = [r for r in await sessions.ledger.possible_leaks() if r.request_id == spec.get("request_id")]
    return row


async def start_upstream(emulator: Emulator, row: SessionRecord) -> str:
    """Start, at the emulator, the instance the lost create made (with the row's generated ids)."""
    envelope = await emulator.call(
        "CreateAgentInstance",
        {
            "AgentId": AGENT_ID,
            "UserId": row.user_id,
            "RTC": {
                "RoomId": row.room_id,
                "AgentUserId": row.agent_user_id,
                "AgentStreamId": row.agent_stream_id,
                "UserStreamId": row.user_stream_id,
            },
        },
    )
    assert envelope["Code"] == 0, envelope
    return str(envelope["Data"]["AgentInstanceId"])


async def remaining_faults(emulator: Emulator) -> int:
    return sum(int(f["count"]) for f in (await emulator.state())["faults"])


def gauge(metrics: Metrics, name: str, kind: str = "voice") -> float | None:
    return metrics.registry.get_sample_value(name, {"kind": kind})


async def test_a_failed_orphan_delete_is_retried_with_backoff_until_zego_confirms_it_gone(
    sessions: SessionService, emulator: Emulator, clock: FakeClock
) -> None:
    row = await lost_create(sessions, emulator, request_id="orphan-1")
    orphan = await start_upstream(emulator, row)
    # The late AgentInstanceCreated reveals it, but the delete fails: a timeout-like drop, then a 5xx-like
    # ZEGO system error, then a rate limit.
    await emulator.fault(action="DeleteAgentInstance", mode="drop", count=1)
    await emulator.fault(action="DeleteAgentInstance", code=410000001, count=1)
    await emulator.fault(action="DeleteAgentInstance", code=410001029, count=1)
    await sessions.leaks.adopt_orphan(row, orphan)
    held = await sessions.ledger.capacity("voice", 3)
    assert (held.in_use, held.suspect) == (1, 1)

    assert (await sessions.leaks.run_once()).waiting == 1  # backoff: 10 s after the first failure
    clock.advance(10)
    assert (await sessions.leaks.run_once()).failed == 1  # the 5xx; next wait 20 s
    clock.advance(19)
    assert (await sessions.leaks.run_once()).waiting == 1
    clock.advance(1)
    assert (await sessions.leaks.run_once()).failed == 1  # the rate limit; next wait 40 s (the cap)
    clock.advance(40)
    assert (await sessions.leaks.run_once()).resolved == 1

    assert await upstream_ids(emulator) == set()
    done = await sessions.get(row.session_id)
    assert (done.possible_leak, done.instance_id, done.end_reason) == (False, orphan, EndReason.REAPED_ORPHAN)
    freed = await sessions.ledger.capacity("voice", 3)
    assert (freed.in_use, freed.suspect) == (0, 0)
    assert await sessions.ledger.possible_leaks() == []


async def test_instance_not_found_counts_as_gone(sessions: SessionService, emulator: Emulator) -> None:
    row = await lost_create(sessions, emulator, request_id="gone-1")
    orphan = await start_upstream(emulator, row)
    envelope = await emulator.call("DeleteAgentInstance", {"AgentInstanceId": orphan})
    assert envelope["Code"] == 0  # gone already, behind our back
    await sessions.leaks.adopt_orphan(row, orphan)  # our delete gets 410001002
    done = await sessions.get(row.session_id)
    assert not done.possible_leak and done.end_reason is EndReason.CREATE_UNCONFIRMED
    assert "410001002" in done.end_detail


async def test_a_leak_past_the_give_up_time_stops_retrying_keeps_its_slot_and_is_reported(
    sessions: SessionService, emulator: Emulator, clock: FakeClock, metrics: Metrics
) -> None:
    row = await lost_create(sessions, emulator, request_id="leak-1")
    orphan = await start_upstream(emulator, row)
    await emulator.fault(action="DeleteAgentInstance", mode="drop", count=1000)
    await sessions.leaks.adopt_orphan(row, orphan)
    for _ in range(20):  # ten minutes of retries, at most every 40 s
        clock.advance(30)
        await sessions.leaks.run_once()
    report = await sessions.leaks.run_once()
    assert report.leaked == 1 and report.failed == 0
    attempts = 1000 - await remaining_faults(emulator)
    assert 10 <= attempts <= 17  # 10 s, 20 s, then every 40 s: bounded, not one per pass

    clock.advance(3600)
    await sessions.leaks.run_once()
    assert 1000 - await remaining_faults(emulator) == attempts  # given up: ZEGO is not called again
    held = await sessions.ledger.capacity("voice", 3)
    assert (held.in_use, held.suspect) == (1, 1)  # never confirmed gone: the slot stays held
    leak = await sessions.get(row.session_id)
    assert leak.possible_leak and leak.instance_id == orphan  # ListSessions shows it as a leak

    await metrics.refresh_from_ledger(
        sessions.ledger, {"voice": 3, "digital_human": 3}, leak_give_up_seconds=POLICY.give_up_seconds
    )
    # The gauge compares against the wall clock; this row ended at the fake clock's start (now).
    assert gauge(metrics, "agentgw_suspect_sessions") == 1
    await metrics.refresh_from_ledger(sessions.ledger, {"voice": 3}, leak_give_up_seconds=-7200)
    assert gauge(metrics, "agentgw_leaked_sessions") == 1
    assert gauge(metrics, "agentgw_leaked_sessions", "digital_human") == 0


async def test_without_an_instance_id_nothing_is_asked_and_the_slot_stays_held(
    sessions: SessionService, emulator: Emulator, clock: FakeClock
) -> None:
    row = await lost_create(sessions, emulator, request_id="unknown-1")
    await emulator.fault(action="DeleteAgentInstance", mode="drop", count=5)
    clock.advance(60)
    assert (await sessions.leaks.run_once()).waiting == 1
    assert await remaining_faults(emulator) == 5  # no id: no call ZEGO could answer
    assert (await sessions.ledger.capacity("voice", 3)).suspect == 1
    assert (await sessions.get(row.session_id)).possible_leak


async def test_a_callback_logged_for_the_session_gives_the_leak_tracker_its_id(
    sessions: SessionService, emulator: Emulator, clock: FakeClock
) -> None:
    # E.g. AgentInstanceCreated was stored, but the process died before the orphan delete ran.
    row = await lost_create(sessions, emulator, request_id="seen-1")
    orphan = await start_upstream(emulator, row)
    await sessions.ledger.append_event(created_event(row, orphan, clock))
    assert (await sessions.leaks.run_once()).resolved == 1
    assert await upstream_ids(emulator) == set()
    assert not (await sessions.get(row.session_id)).possible_leak


def created_event(row: SessionRecord, instance_id: str, clock: FakeClock, *, hidden: bool = True) -> NewEvent:
    return NewEvent(
        event_type=EventType.CREATED,
        session_id=row.session_id,
        instance_id=instance_id,
        agent_id=row.agent_id,
        room_id=row.room_id,
        event_time_ms=int(clock() * 1000),
        received_at=clock(),
        sequence=int(time.time() * 1000),
        round=None,
        data={},
        labels=row.labels,
        agent_user_id=row.agent_user_id,
        hidden=hidden,
    )


# --- start-up -------------------------------------------------------------------------------------


async def test_restart_adopts_a_pending_row_whose_instance_a_callback_named(
    sessions: SessionService, emulator: Emulator, clock: FakeClock
) -> None:
    # The process died mid-create; ZEGO's AgentInstanceCreated (matched by the generated room and
    # agent user ids) was stored before it died, its answer never was.
    reserved = await sessions.ledger.reserve_session(pending_row(clock, user_id="user_adopt"), 3)
    assert reserved.session is not None
    pending = reserved.session
    iid = await start_upstream(emulator, pending)
    await sessions.ledger.append_event(created_event(pending, iid, clock, hidden=False))

    report = await Reaper(sessions, clock=clock).reconcile_at_startup()
    assert report.activated == 1 and report.create_unconfirmed == 0
    adopted = await sessions.get(pending.session_id)
    assert (adopted.state, adopted.instance_id, adopted.possible_leak) == (S.ACTIVE, iid, False)


async def test_restart_adopts_then_ends_a_pending_row_whose_instance_is_gone(
    sessions: SessionService, emulator: Emulator, clock: FakeClock
) -> None:
    reserved = await sessions.ledger.reserve_session(pending_row(clock, user_id="user_gone"), 3)
    assert reserved.session is not None
    iid = await start_upstream(emulator, reserved.session)
    await sessions.ledger.append_event(created_event(reserved.session, iid, clock, hidden=False))
    assert (await emulator.call("DeleteAgentInstance", {"AgentInstanceId": iid}))["Code"] == 0

    report = await Reaper(sessions, clock=clock).reconcile_at_startup()
    assert report.ended == 1
    ended = await sessions.get(reserved.session.session_id)
    assert (ended.state, ended.end_reason, ended.possible_leak) == (S.ENDED, EndReason.UPSTREAM_GONE, False)
    assert (await sessions.ledger.capacity("voice", 3)).in_use == 0


async def test_reaper_failed_pending_rows_get_their_ended_event_and_are_counted(
    sessions: SessionService, clock: FakeClock, metrics: Metrics
) -> None:
    row = await sessions.ledger.reserve_session(pending_row(clock), 3)
    assert row.session is not None
    clock.advance(31)
    report = await Reaper(sessions, settings=ReaperSettings(pending_grace_seconds=30), clock=clock).run_once()
    assert report.create_unconfirmed == 1
    ended = metrics.registry.get_sample_value(
        "agentgw_sessions_ended_total", {"kind": "voice", "reason": "create_unconfirmed"}
    )
    assert ended == 1
    assert (await sessions.ledger.capacity("voice", 3)).suspect == 1


# --- admission ------------------------------------------------------------------------------------


async def test_suspect_slots_refuse_creates_beyond_the_cap(
    sessions: SessionService, emulator: Emulator
) -> None:
    await emulator.fault(action="CreateAgentInstance", mode="drop", count=100)
    for n in range(3):
        with pytest.raises(zx.ZegoTransportError):
            await sessions.create(voice_spec(request_id=f"cap-{n}"))
    for n in range(5):
        with pytest.raises(CapacityExhausted):
            await sessions.create(voice_spec(request_id=f"more-{n}"))
        # The same request_id replays the unconfirmed outcome: never a second create.
        replayed = await sessions.create(voice_spec(request_id=f"cap-{n % 3}"))
        assert replayed.possible_leak and replayed.state is S.FAILED
    assert await remaining_faults(emulator) == 97  # ZEGO saw exactly the 3 creates the cap allows


# --- AIP-155 retries --------------------------------------------------------------------------------


async def test_a_retry_after_a_retryable_refusal_is_a_new_attempt(
    sessions: SessionService, emulator: Emulator
) -> None:
    spec = voice_spec(request_id="retry-1", request_hash="h1")
    await emulator.fault(action="CreateAgentInstance", code=410000001, count=1)  # system error
    with pytest.raises(zx.ZegoServiceError):
        await sessions.create(spec)
    retried = await sessions.create(spec)
    assert retried.state is S.STARTING and retried.request_id == "retry-1"
    again = await sessions.create(spec)  # now a plain replay of the success
    assert again.session_id == retried.session_id
    failed = [r for r in await sessions.ledger.sessions_in_states(frozenset({S.FAILED}))]
    assert len(failed) == 1 and failed[0].request_id is None
    moves = await sessions.transitions(failed[0].session_id)
    assert moves[-1].cause == "create_retried" and retried.session_id in moves[-1].detail


async def test_a_refusal_that_is_not_retryable_is_replayed(
    sessions: SessionService, emulator: Emulator
) -> None:
    spec = voice_spec(request_id="bad-1", request_hash="h2")
    await emulator.fault(action="CreateAgentInstance", code=410000003, count=1)  # invalid parameter
    with pytest.raises(zx.ZegoInvalidRequest):
        await sessions.create(spec)
    replayed = await sessions.create(spec)
    assert replayed.state is S.FAILED and replayed.zego_code == 410000003
    assert len(await upstream_ids(emulator)) == 0


async def test_an_unconfirmed_create_is_retried_only_once_zego_confirms_no_instance(
    sessions: SessionService, emulator: Emulator
) -> None:
    row = await lost_create(sessions, emulator, request_id="lost-1", request_hash="h3")
    spec = voice_spec(request_id="lost-1", request_hash="h3")
    assert (await sessions.create(spec)).session_id == row.session_id  # may still run: replayed
    assert await upstream_ids(emulator) == set()
    await sessions.leaks.confirm_gone(row, "ZEGO reported the instance deleted (AgentInstanceDeleted)")
    retried = await sessions.create(spec)
    assert retried.state is S.STARTING and retried.session_id != row.session_id
    assert len(await upstream_ids(emulator)) == 1


async def test_concurrent_retries_make_one_new_attempt(sessions: SessionService, emulator: Emulator) -> None:
    spec = voice_spec(request_id="race-1", request_hash="h4")
    await emulator.fault(action="CreateAgentInstance", code=410001029, count=1)  # rate limited
    with pytest.raises(zx.ZegoRateLimited):
        await sessions.create(spec)
    results = await asyncio.gather(*(sessions.create(spec) for _ in range(5)))
    assert len({r.session_id for r in results}) == 1
    assert len(await upstream_ids(emulator)) == 1


def test_leak_policy_validates_and_backs_off() -> None:
    assert [POLICY.delay(n) for n in (1, 2, 3, 4, 9)] == [10, 20, 40, 40, 40]
    for bad in ({"give_up_seconds": 0}, {"retry_initial_seconds": -1}, {"retry_max_seconds": 1}):
        with pytest.raises(ValueError):
            LeakPolicy(**{"retry_initial_seconds": 5, **bad})  # type: ignore[arg-type]
    assert SessionKind.VOICE.pool == "voice"


async def test_end_session_on_a_leak_tries_once_more_even_after_the_give_up_time(
    sessions: SessionService, emulator: Emulator, clock: FakeClock
) -> None:
    row = await lost_create(sessions, emulator, request_id="operator-1")
    orphan = await start_upstream(emulator, row)
    await emulator.fault(action="DeleteAgentInstance", mode="drop", count=1)
    await sessions.leaks.adopt_orphan(row, orphan)
    clock.advance(POLICY.give_up_seconds + 1)
    assert (await sessions.leaks.run_once()).leaked == 1
    # An operator settles it: EndSession deletes the instance now and frees the slot.
    ended = await sessions.end(row.session_id)
    assert not ended.possible_leak and ended.state is S.FAILED
    assert await upstream_ids(emulator) == set()
    assert (await sessions.ledger.capacity("voice", 3)).in_use == 0
    # An ordinary ended session is returned as it is, without calling ZEGO.
    assert (await sessions.end(row.session_id)).version == ended.version


async def test_start_up_retries_an_orphan_whose_delete_failed_before_the_restart(
    sessions: SessionService, emulator: Emulator, clock: FakeClock
) -> None:
    row = await lost_create(sessions, emulator, request_id="restart-1")
    orphan = await start_upstream(emulator, row)
    await emulator.fault(action="DeleteAgentInstance", code=410000001, count=1)
    await sessions.leaks.adopt_orphan(row, orphan)  # fails; then the process "dies"
    restarted = SessionService(
        sessions.zego,
        sessions.ledger,
        settings=SETTINGS,
        leak_policy=POLICY,
        clock=clock,
    )
    report = await Reaper(restarted, clock=clock).reconcile_at_startup()
    assert (report.leaks_resolved, report.leaked) == (1, 0)
    assert await upstream_ids(emulator) == set()
    assert (await restarted.ledger.capacity("voice", 3)).in_use == 0
