"""The reaper and start-up recovery against the emulator, on a fake clock.

Covers max_duration, stuck STARTING/ENDING/PENDING rows, per-row isolation of failures, a crash
between ZEGO's answer and the ledger update, restarts that must keep healthy sessions, and the rule
that only instances recorded in the ledger are ever touched.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from service.domain.events import EventFilter, EventType
from service.domain.model import EndReason, NewSession, SessionKind, SessionRecord, SessionState
from service.domain.reaper import PassReport, Reaper, ReconcileReport
from service.domain.sessions import SessionService
from service.store.sqlite import SqliteLedger
from service.zego import exceptions as zx
from service.zego.client import ZegoClient
from tests.backends import LedgerFactory
from tests.conftest import Emulator
from tests.domain.conftest import (
    AGENT_ID,
    FakeClock,
    delete_behind_our_back,
    make_service,
    upstream_ids,
    voice_spec,
)

S = SessionState
K = SessionKind


class RecordingObserver:
    """Collects what the reaper reports to metrics."""

    def __init__(self) -> None:
        self.leaks: list[SessionKind] = []
        self.ended: list[tuple[SessionKind, EndReason]] = []

    def possible_leak(self, kind: SessionKind) -> None:
        self.leaks.append(kind)

    def session_ended(self, kind: SessionKind, reason: EndReason) -> None:
        self.ended.append((kind, reason))


class ProcessDied(Exception):
    """Stands in for the process dying at a chosen point."""


class FaultyLedger:
    """A ledger that fails chosen transitions (``fail_to``) or passes (``fail_reads``), else delegates."""

    def __init__(
        self, inner: SqliteLedger, *, fail_to: SessionState | None = None, fail_session: str = ""
    ) -> None:
        self.inner = inner
        self.fail_to = fail_to
        self.fail_session = fail_session
        self.fail_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def transition(self, session_id: str, to_state: SessionState, **kwargs: Any) -> SessionRecord:
        if to_state is self.fail_to and self.fail_session in ("", session_id):
            raise ProcessDied(f"died before recording {to_state.value}")
        return await self.inner.transition(session_id, to_state, **kwargs)

    async def start_session(self, session_id: str, **kwargs: Any) -> tuple[SessionRecord, bool]:
        if self.fail_to is SessionState.STARTING and self.fail_session in ("", session_id):
            raise ProcessDied("died before recording starting")
        return await self.inner.start_session(session_id, **kwargs)

    async def sessions_in_states(self, states: frozenset[SessionState]) -> list[SessionRecord]:
        if self.fail_reads:
            self.fail_reads -= 1
            raise ProcessDied("ledger unreadable")
        return await self.inner.sessions_in_states(states)


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
def reaper(sessions: SessionService, clock: FakeClock, observer: RecordingObserver) -> Reaper:
    return Reaper(
        sessions,
        starting_timeout_seconds=30,
        ending_timeout_seconds=60,
        pending_grace_seconds=30,
        clock=clock,
        observer=observer,
    )


def pending_row(clock: FakeClock, **overrides: Any) -> NewSession:
    """A PENDING row as a create that never heard back from ZEGO leaves it."""
    sid = uuid.uuid4().hex
    fields: dict[str, Any] = {
        "session_id": sid,
        "kind": K.VOICE,
        "agent_id": AGENT_ID,
        "user_id": "user_pending",
        "room_id": "room_pending",
        "agent_user_id": f"ag_{sid[:28]}",
        "agent_stream_id": f"ag_{sid}_main",
        "user_stream_id": "user_pending_main",
        "labels": {},
        "max_duration_seconds": 3600,
        "request_id": None,
        "request_hash": None,
        "created_at": clock(),
    }
    fields.update(overrides)
    return NewSession(**fields)


async def state_of(sessions: SessionService, session_id: str) -> tuple[SessionState, EndReason | None]:
    record = await sessions.get(session_id)
    return record.state, record.end_reason


# --- rule 1: max_duration --------------------------------------------------------------------------


async def test_max_duration_ends_the_session_and_deletes_the_instance(
    sessions: SessionService,
    reaper: Reaper,
    clock: FakeClock,
    emulator: Emulator,
    observer: RecordingObserver,
) -> None:
    short = await sessions.create(voice_spec(max_duration_seconds=60))
    active = await sessions.mark_active(await sessions.create(voice_spec(max_duration_seconds=90)), "test")
    long = await sessions.create(voice_spec())

    clock.advance(59)
    assert (await reaper.run_once()).max_duration == 0
    clock.advance(32)  # 91 s: past both short deadlines, far from the default hour
    report = await reaper.run_once()

    assert report.max_duration == 2
    for record in (short, active):
        assert await state_of(sessions, record.session_id) == (S.ENDED, EndReason.MAX_DURATION)
    assert await upstream_ids(emulator) == {long.instance_id}
    assert observer.ended == [(K.VOICE, EndReason.MAX_DURATION)] * 2
    causes = [t.cause for t in await sessions.transitions(short.session_id)]
    assert causes[-2:] == ["reaper_max_duration", "reaper_max_duration"]


async def test_max_duration_with_a_lost_delete_is_finished_later(
    sessions: SessionService, reaper: Reaper, clock: FakeClock, emulator: Emulator
) -> None:
    record = await sessions.create(voice_spec(max_duration_seconds=60))
    await emulator.fault(action="DeleteAgentInstance", mode="drop", count=1)
    clock.advance(61)

    assert (await reaper.run_once()).unverified == 1
    assert await state_of(sessions, record.session_id) == (S.ENDING, EndReason.MAX_DURATION)

    clock.advance(61)  # past ending_timeout: ZEGO still runs it, so the delete is sent again
    assert (await reaper.run_once()).ended == 1
    assert await state_of(sessions, record.session_id) == (S.ENDED, EndReason.MAX_DURATION)
    assert await upstream_ids(emulator) == set()


# --- rule 2: stuck STARTING ------------------------------------------------------------------------


async def test_stuck_starting_becomes_active_when_zego_confirms(
    sessions: SessionService, reaper: Reaper, clock: FakeClock
) -> None:
    record = await sessions.create(voice_spec())

    clock.advance(29)
    assert (await reaper.run_once()).activated == 0  # not stuck yet: the callback may still come
    clock.advance(2)
    assert (await reaper.run_once()).activated == 1

    active = await sessions.get(record.session_id)
    assert active.state is S.ACTIVE and active.started_at == clock.now
    assert [t.cause for t in await sessions.transitions(record.session_id)][-1] == "reaper_status_ok"
    clock.advance(30)
    assert await reaper.run_once() == PassReport(examined=1)  # a healthy ACTIVE session is left alone
    clock.advance(30)
    # Rule 5: after active_probe_seconds it is asked about, found alive, and left running.
    assert await reaper.run_once() == PassReport(examined=1, alive=1)
    assert (await sessions.get(record.session_id)).state is S.ACTIVE


async def test_active_session_gone_silently_is_ended_with_one_synthesized_event(
    sessions: SessionService, reaper: Reaper, clock: FakeClock, emulator: Emulator
) -> None:
    record = await sessions.create(voice_spec())
    record = await sessions.mark_active(record, "test")
    assert record.instance_id
    # ZEGO removed it (MaxIdleTime, say) and its AgentInstanceDeleted callback was lost.
    await delete_behind_our_back(emulator, record.instance_id)
    clock.advance(61)
    assert (await reaper.run_once()).ended == 1
    assert await state_of(sessions, record.session_id) == (S.ENDED, EndReason.UPSTREAM_GONE)
    ended = await sessions.ledger.events_after(0, 10, EventFilter(session_ids=frozenset({record.session_id})))
    assert [(e.event_type, e.data["reason"], e.data["synthesized"]) for e in ended] == [
        (EventType.ENDED, "UPSTREAM_GONE", True)
    ]


async def test_stuck_starting_gone_upstream_is_ended_and_frees_the_slot(
    sessions: SessionService,
    reaper: Reaper,
    clock: FakeClock,
    emulator: Emulator,
    observer: RecordingObserver,
) -> None:
    record = await sessions.create(voice_spec())
    assert record.instance_id
    await delete_behind_our_back(emulator, record.instance_id)
    clock.advance(31)

    assert (await reaper.run_once()).ended == 1

    assert await state_of(sessions, record.session_id) == (S.ENDED, EndReason.UPSTREAM_GONE)
    assert [c.in_use for c in await sessions.capacity()] == [0, 0]
    assert observer.ended == [(K.VOICE, EndReason.UPSTREAM_GONE)]


# --- rule 3: stuck ENDING --------------------------------------------------------------------------


async def test_stuck_ending_still_alive_is_deleted_again(
    sessions: SessionService, reaper: Reaper, clock: FakeClock, emulator: Emulator
) -> None:
    record = await sessions.create(voice_spec())
    await emulator.fault(action="DeleteAgentInstance", mode="drop", count=1)
    with pytest.raises(zx.ZegoTransportError):
        await sessions.end(record.session_id)
    assert await state_of(sessions, record.session_id) == (S.ENDING, EndReason.ENDED_BY_CALLER)
    assert record.instance_id in await upstream_ids(emulator)

    clock.advance(59)
    assert (await reaper.run_once()).ended == 0
    clock.advance(2)
    assert (await reaper.run_once()).ended == 1

    assert await state_of(sessions, record.session_id) == (S.ENDED, EndReason.ENDED_BY_CALLER)
    assert await upstream_ids(emulator) == set()


async def test_stuck_ending_gone_upstream_keeps_the_reason_asked_for(
    sessions: SessionService, reaper: Reaper, clock: FakeClock, emulator: Emulator
) -> None:
    record = await sessions.create(voice_spec())
    assert record.instance_id
    await emulator.fault(action="DeleteAgentInstance", mode="drop", count=1)
    with pytest.raises(zx.ZegoTransportError):
        await sessions.end(record.session_id, reason=EndReason.MAX_DURATION, cause="test")
    await delete_behind_our_back(emulator, record.instance_id)  # e.g. the lost delete did happen
    clock.advance(61)

    assert (await reaper.run_once()).ended == 1
    assert await state_of(sessions, record.session_id) == (S.ENDED, EndReason.MAX_DURATION)


async def test_ending_with_a_graceful_shutdown_under_way_is_left_to_zego(
    sessions: SessionService, reaper: Reaper, clock: FakeClock, emulator: Emulator
) -> None:
    record = await sessions.create(voice_spec())
    await sessions.end(record.session_id, graceful=True)
    await emulator.fault(action="QueryAgentInstanceStatus", code=410001041, count=1)
    clock.advance(61)

    assert (await reaper.run_once()).alive == 1
    assert (await sessions.get(record.session_id)).state is S.ENDING
    assert (await reaper.run_once()).ended == 1  # the emulator destroyed the idle agent at once


# --- rule 4: PENDING -------------------------------------------------------------------------------


async def test_pending_past_the_grace_is_an_unconfirmed_possible_leak(
    sessions: SessionService, reaper: Reaper, clock: FakeClock, observer: RecordingObserver
) -> None:
    row = pending_row(clock, kind=K.DIGITAL_HUMAN)
    await sessions.ledger.reserve_session(row, 10)

    clock.advance(29)
    assert (await reaper.run_once()).create_unconfirmed == 0
    clock.advance(2)
    assert (await reaper.run_once()).create_unconfirmed == 1

    failed = await sessions.get(row.session_id)
    assert failed.state is S.FAILED and failed.end_reason is EndReason.CREATE_UNCONFIRMED
    assert failed.possible_leak and failed.ended_at == clock.now
    assert observer.leaks == [K.DIGITAL_HUMAN]
    assert observer.ended == [(K.DIGITAL_HUMAN, EndReason.CREATE_UNCONFIRMED)]
    # The instance may run at ZEGO: the slot stays held, shown as suspect.
    assert [(c.in_use, c.suspect) for c in await sessions.capacity()] == [(1, 1), (0, 0)]
    # Like every terminal transition, it went through the event log: one ended event.
    ended = await sessions.ledger.events_after(
        0, 10, EventFilter(session_ids=frozenset({row.session_id}), event_types=frozenset({EventType.ENDED}))
    )
    assert [e.data["reason"] for e in ended] == ["CREATE_UNCONFIRMED"]


async def test_pending_whose_create_is_in_flight_is_left_alone(
    sessions: SessionService, reaper: Reaper, clock: FakeClock, emulator: Emulator
) -> None:
    await emulator.fault(action="CreateAgentInstance", latency_ms=300, count=1)
    creating = asyncio.create_task(sessions.create(voice_spec()))
    await asyncio.sleep(0.1)
    clock.advance(3600)  # past any grace, yet this process is still waiting for ZEGO

    report = await reaper.run_once()

    assert report == PassReport(examined=1)
    assert (await creating).state is S.STARTING


# --- isolation of failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "drop", "count": 3},  # every attempt of a (retried, read-only) status query
        {"code": 410000001, "count": 1},  # ZEGO system error
    ],
    ids=["dropped", "system_error"],
)
async def test_a_zego_failure_on_one_row_does_not_stop_the_pass(
    sessions: SessionService, reaper: Reaper, clock: FakeClock, emulator: Emulator, fault: dict[str, Any]
) -> None:
    records = [await sessions.create(voice_spec()) for _ in range(2)]
    await emulator.fault(action="QueryAgentInstanceStatus", **fault)
    clock.advance(31)

    report = await reaper.run_once()

    assert (report.unverified, report.activated) == (1, 1)
    states = {(await sessions.get(r.session_id)).state for r in records}
    assert states == {S.STARTING, S.ACTIVE}
    assert (await reaper.run_once()).activated == 1  # retried next pass
    assert {(await sessions.get(r.session_id)).state for r in records} == {S.ACTIVE}


async def test_a_store_failure_on_one_row_does_not_stop_the_pass(
    zego: ZegoClient, ledger: SqliteLedger, clock: FakeClock
) -> None:
    faulty = FaultyLedger(ledger)
    sessions = make_service(zego, faulty, clock)
    bad, good = [await sessions.create(voice_spec()) for _ in range(2)]
    faulty.fail_to, faulty.fail_session = S.ACTIVE, bad.session_id
    clock.advance(31)

    report = await Reaper(sessions, clock=clock).run_once()

    assert (report.errors, report.activated) == (1, 1)
    assert (await sessions.get(bad.session_id)).state is S.STARTING
    assert (await sessions.get(good.session_id)).state is S.ACTIVE


async def test_a_failing_observer_does_not_stop_the_pass(sessions: SessionService, clock: FakeClock) -> None:
    class Broken(RecordingObserver):
        def session_ended(self, kind: SessionKind, reason: EndReason) -> None:
            raise RuntimeError("metrics down")

    records = [await sessions.create(voice_spec(max_duration_seconds=10)) for _ in range(2)]
    clock.advance(11)

    report = await Reaper(sessions, clock=clock, observer=Broken()).run_once()

    assert report.max_duration == 2
    assert {(await sessions.get(r.session_id)).state for r in records} == {S.ENDED}


# --- start-up recovery -----------------------------------------------------------------------------


async def test_crash_between_zegos_answer_and_the_ledger_update(
    zego: ZegoClient,
    db_path: Path,
    clock: FakeClock,
    emulator: Emulator,
    observer: RecordingObserver,
    make_ledger: LedgerFactory,
) -> None:
    first = make_ledger(db_path)
    await first.open()
    doomed = make_service(zego, FaultyLedger(first, fail_to=S.STARTING), clock)
    with pytest.raises(ProcessDied):
        await doomed.create(voice_spec())
    await first.close()
    (leaked,) = await upstream_ids(emulator)  # ZEGO created it; nobody recorded its id

    restarted = make_ledger(db_path)
    await restarted.open()
    try:
        sessions = make_service(zego, restarted, clock)
        (pending,) = await restarted.sessions_in_states(frozenset({S.PENDING}))
        report = await Reaper(sessions, clock=clock, observer=observer).reconcile_at_startup()

        assert report == ReconcileReport(examined=1, create_unconfirmed=1)
        failed = await sessions.get(pending.session_id)
        assert failed.state is S.FAILED and failed.end_reason is EndReason.CREATE_UNCONFIRMED
        assert failed.possible_leak and failed.instance_id is None
        assert observer.leaks == [K.VOICE]
        # Without its id nothing may be deleted: the operator gets the flag, ZEGO keeps the instance,
        # and so does admission: the slot stays held as suspect.
        assert await upstream_ids(emulator) == {leaked}
        assert [(c.pool, c.in_use, c.suspect) for c in await sessions.capacity()] == [
            ("digital_human", 0, 0),
            ("voice", 1, 1),
        ]
    finally:
        await restarted.close()


async def test_restart_keeps_healthy_sessions(
    zego: ZegoClient, db_path: Path, clock: FakeClock, emulator: Emulator, make_ledger: LedgerFactory
) -> None:
    ledger = make_ledger(db_path)
    await ledger.open()
    before = make_service(zego, ledger, clock)
    starting = await before.create(voice_spec())
    active = await before.mark_active(await before.create(voice_spec()), "callback")
    await ledger.close()

    reopened = make_ledger(db_path)
    await reopened.open()
    try:
        sessions = make_service(zego, reopened, clock)
        report = await Reaper(sessions, clock=clock).reconcile_at_startup()

        assert report == ReconcileReport(examined=2, activated=1, alive=1)
        assert (await sessions.get(starting.session_id)).state is S.ACTIVE
        assert (await sessions.get(active.session_id)).state is S.ACTIVE
        assert await upstream_ids(emulator) == {starting.instance_id, active.instance_id}
    finally:
        await reopened.close()


async def test_reconcile_resolves_every_kind_of_row(
    sessions: SessionService, clock: FakeClock, emulator: Emulator, observer: RecordingObserver
) -> None:
    ledger = sessions.ledger
    pending = pending_row(clock)
    await ledger.reserve_session(pending, 10)
    starting_gone = await sessions.create(voice_spec())
    active_gone = await sessions.mark_active(await sessions.create(voice_spec()), "callback")
    ending_alive = await sessions.create(voice_spec())
    ending_gone = await sessions.create(voice_spec())
    await emulator.fault(action="DeleteAgentInstance", mode="drop", count=2)
    for record, reason in ((ending_alive, EndReason.ENDED_BY_CALLER), (ending_gone, EndReason.MAX_DURATION)):
        with pytest.raises(zx.ZegoTransportError):
            await sessions.end(record.session_id, reason=reason)
    for record in (starting_gone, active_gone, ending_gone):
        assert record.instance_id
        await delete_behind_our_back(emulator, record.instance_id)

    # Nothing is old yet: start-up does not wait for timeouts.
    report = await Reaper(sessions, clock=clock, observer=observer).reconcile_at_startup()

    assert report == ReconcileReport(examined=5, create_unconfirmed=1, ended=4)
    assert await state_of(sessions, starting_gone.session_id) == (S.ENDED, EndReason.UPSTREAM_GONE)
    assert await state_of(sessions, active_gone.session_id) == (S.ENDED, EndReason.UPSTREAM_GONE)
    assert await state_of(sessions, ending_alive.session_id) == (S.ENDED, EndReason.ENDED_BY_CALLER)
    assert await state_of(sessions, ending_gone.session_id) == (S.ENDED, EndReason.MAX_DURATION)
    assert await upstream_ids(emulator) == set()
    assert observer.leaks == [K.VOICE]


async def test_reconcile_leaves_unverifiable_rows_for_the_periodic_pass(
    sessions: SessionService, clock: FakeClock, emulator: Emulator
) -> None:
    record = await sessions.create(voice_spec())
    await emulator.fault(action="QueryAgentInstanceStatus", mode="drop", count=3)
    reaper = Reaper(sessions, clock=clock)

    assert await reaper.reconcile_at_startup() == ReconcileReport(examined=1, unverified=1)
    assert (await sessions.get(record.session_id)).state is S.STARTING

    clock.advance(31)
    assert (await reaper.run_once()).activated == 1


# --- only our own instances ------------------------------------------------------------------------


async def test_instances_not_in_the_ledger_are_never_touched(
    sessions: SessionService, reaper: Reaper, clock: FakeClock, emulator: Emulator
) -> None:
    envelope = await emulator.call(
        "CreateAgentInstance",
        {
            "AgentId": AGENT_ID,
            "UserId": "someone_else",
            "RTC": {
                "RoomId": "their_room",
                "AgentStreamId": "their_agent_stream",
                "AgentUserId": "their_agent",
                "UserStreamId": "their_stream",
            },
        },
    )
    foreign = envelope["Data"]["AgentInstanceId"]
    ours = await sessions.create(voice_spec(max_duration_seconds=60))
    clock.advance(10_000)  # past every deadline, timeout and grace

    await reaper.reconcile_at_startup()
    await reaper.run_once()

    assert await state_of(sessions, ours.session_id) == (S.ENDED, EndReason.MAX_DURATION)
    assert await upstream_ids(emulator) == {foreign}


# --- lifecycle ---------------------------------------------------------------------------------------


async def test_background_task_runs_passes_and_survives_a_failing_one(
    zego: ZegoClient, ledger: SqliteLedger, clock: FakeClock
) -> None:
    faulty = FaultyLedger(ledger)
    sessions = make_service(zego, faulty, clock)
    record = await sessions.create(voice_spec(max_duration_seconds=60))
    faulty.fail_reads = 1  # the first pass cannot read the ledger
    clock.advance(61)
    ended = asyncio.Event()

    class Signal(RecordingObserver):
        def session_ended(self, kind: SessionKind, reason: EndReason) -> None:
            ended.set()

    reaper = Reaper(sessions, interval_seconds=0.05, clock=clock, observer=Signal())
    async with reaper:
        assert reaper.running
        async with asyncio.timeout(2):
            await ended.wait()
    assert not reaper.running
    assert (await sessions.get(record.session_id)).state is S.ENDED
    assert faulty.fail_reads == 0
    await reaper.stop()  # idempotent


async def test_start_twice_is_refused(sessions: SessionService) -> None:
    async with Reaper(sessions, interval_seconds=1) as reaper:
        with pytest.raises(RuntimeError):
            await reaper.start()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval_seconds": 0},
        {"interval_seconds": 86_400},
        {"starting_timeout_seconds": -1},
        {"pending_grace_seconds": float("inf")},
        {"call_timeout_seconds": 0},
    ],
)
async def test_bad_settings_are_refused(sessions: SessionService, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Reaper(sessions, **kwargs)
