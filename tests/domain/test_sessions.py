"""SessionService against the emulator: crash-safe, idempotent creation under admission control,
ending (plain, repeated, graceful, already gone upstream) and in-call control."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from service.config import ReaperSettings
from service.domain.model import EndReason, SessionKind, SessionState
from service.domain.reaper import Reaper
from service.domain.sessions import SessionService
from service.errors import CapacityExhausted, FailedPrecondition, RequestIdReused
from service.store.sqlite import SqliteLedger
from service.zego import exceptions as zx
from tests.conftest import Emulator, eventually
from tests.domain.conftest import (
    LIMIT,
    FakeClock,
    create_in_flight,
    delete_behind_our_back,
    dh_spec,
    live_spec,
    upstream_ids,
    voice_spec,
)

S = SessionState


# --- create ----------------------------------------------------------------------------------------


async def test_voice_session_starts_with_generated_ids(sessions: SessionService, emulator: Emulator) -> None:
    record = await sessions.create(voice_spec())

    assert record.state is S.STARTING and record.kind is SessionKind.VOICE
    assert record.instance_id and record.instance_id in await upstream_ids(emulator)
    assert record.digital_human_config is None
    # ZEGO caps AgentUserId at 32 bytes and both ids must be unique among running instances.
    assert 0 < len(record.agent_user_id.encode()) <= 32
    assert record.agent_stream_id
    upstream = (await emulator.state())["instances"][0]
    assert upstream["AgentUserId"] == record.agent_user_id
    assert upstream["AgentStreamId"] == record.agent_stream_id
    assert upstream["RoomId"] == record.room_id
    causes = [t.cause for t in await sessions.transitions(record.session_id)]
    assert causes == ["create", "zego_created"]


async def test_generated_ids_are_unique_across_sessions(sessions: SessionService) -> None:
    records = [await sessions.create(voice_spec(room_id="shared_room")) for _ in range(5)]

    assert len({r.agent_user_id for r in records}) == 5
    assert len({r.agent_stream_id for r in records}) == 5
    assert len({r.instance_id for r in records}) == 5


async def test_caller_chosen_agent_ids_are_kept(sessions: SessionService, emulator: Emulator) -> None:
    record = await sessions.create(voice_spec(agent_user_id="bot_7", agent_stream_id="bot_7_main"))

    assert (record.agent_user_id, record.agent_stream_id) == ("bot_7", "bot_7_main")
    assert (await emulator.state())["instances"][0]["AgentUserId"] == "bot_7"


async def test_digital_human_session_returns_its_client_config(
    sessions: SessionService, emulator: Emulator
) -> None:
    record = await sessions.create(dh_spec())

    assert record.state is S.STARTING and record.kind is SessionKind.DIGITAL_HUMAN
    assert record.digital_human_config
    config = json.loads(base64.b64decode(record.digital_human_config))
    assert config  # opaque to us; the client SDK reads it
    assert (await emulator.state())["counts"]["digital_human"] == 1


@pytest.mark.parametrize("cdn_url", [None, "rtmp://cdn.example.com/live/stream_1"])
async def test_live_digital_human_session_over_rtc_or_cdn(
    sessions: SessionService, emulator: Emulator, cdn_url: str | None
) -> None:
    record = await sessions.create(live_spec(cdn_url=cdn_url))

    assert record.state is S.STARTING and record.kind is SessionKind.LIVE_DIGITAL_HUMAN
    assert record.instance_id and record.digital_human_config
    assert record.cdn_url == cdn_url
    upstream = (await emulator.state())["instances"]
    assert [i["kind"] for i in upstream] == ["live_digital_human"]
    assert upstream[0]["CdnUrl"] == cdn_url
    # Live digital humans share the digital-human pool.
    pools = {c.pool: c.in_use for c in await sessions.capacity()}
    assert pools == {"digital_human": 1, "voice": 0}


async def test_same_request_id_sequentially_is_one_session(
    sessions: SessionService, emulator: Emulator
) -> None:
    spec = voice_spec(request_id="req-1", request_hash="h1")

    first = await sessions.create(spec)
    second = await sessions.create(spec)

    assert second.session_id == first.session_id and second.instance_id == first.instance_id
    assert (await emulator.state())["counts"]["instances"] == 1


async def test_same_request_id_concurrently_is_one_session(
    sessions: SessionService, emulator: Emulator
) -> None:
    spec = voice_spec(request_id="req-2", request_hash="h2")

    results = await asyncio.gather(*(sessions.create(spec) for _ in range(5)))

    assert len({r.session_id for r in results}) == 1
    # The retries waited for the first attempt's answer instead of returning its PENDING row.
    assert {r.state for r in results} == {S.STARTING}
    assert (await emulator.state())["counts"]["instances"] == 1


async def test_same_request_id_with_another_body_is_rejected(sessions: SessionService) -> None:
    await sessions.create(voice_spec(request_id="req-3", request_hash="h3"))

    with pytest.raises(RequestIdReused):
        await sessions.create(voice_spec(request_id="req-3", request_hash="other"))


async def test_admission_control_under_a_burst(sessions: SessionService, emulator: Emulator) -> None:
    results = await asyncio.gather(
        *(sessions.create(voice_spec()) for _ in range(50)), return_exceptions=True
    )

    created = [r for r in results if not isinstance(r, BaseException)]
    rejected = [r for r in results if isinstance(r, CapacityExhausted)]
    assert len(created) == LIMIT and len(rejected) == 50 - LIMIT
    assert all(r.state is S.STARTING for r in created)
    # ZEGO never saw more creates than there are slots.
    assert (await emulator.state())["counts"]["voice"] == LIMIT
    (voice,) = [c for c in await sessions.capacity() if c.pool == "voice"]
    assert (voice.in_use, voice.limit) == (LIMIT, LIMIT)


async def test_zego_rejecting_the_create_fails_the_session_and_frees_the_slot(
    sessions: SessionService, ledger: SqliteLedger, emulator: Emulator
) -> None:
    await emulator.fault(action="CreateAgentInstance", code=410001003, count=1)

    with pytest.raises(zx.ZegoApiError) as caught:
        await sessions.create(voice_spec(request_id="req-4", request_hash="h4"))

    assert caught.value.code == 410001003
    (failed,) = await ledger.sessions_in_states(frozenset({S.FAILED}))
    assert failed.end_reason is EndReason.CREATE_FAILED
    assert failed.zego_code == 410001003 and not failed.possible_leak
    assert (await ledger.capacity("voice", LIMIT)).in_use == 0
    # The slot is usable again.
    assert (await sessions.create(voice_spec())).state is S.STARTING


async def test_a_dropped_create_is_unconfirmed_and_a_possible_leak(
    sessions: SessionService, ledger: SqliteLedger, emulator: Emulator
) -> None:
    await emulator.fault(action="CreateAgentInstance", mode="drop", count=1)

    with pytest.raises(zx.ZegoTransportError):
        await sessions.create(voice_spec())

    (failed,) = await ledger.sessions_in_states(frozenset({S.FAILED}))
    assert failed.end_reason is EndReason.CREATE_UNCONFIRMED
    assert failed.possible_leak and failed.instance_id is None
    # The instance may exist, so the slot stays held until ZEGO confirms it gone.
    capacity = await ledger.capacity("voice", LIMIT)
    assert (capacity.in_use, capacity.suspect, capacity.pending) == (1, 1, 0)


# --- end -------------------------------------------------------------------------------------------


async def test_end_deletes_the_instance(sessions: SessionService, emulator: Emulator) -> None:
    record = await sessions.create(voice_spec())

    ended = await sessions.end(record.session_id)

    assert ended.state is S.ENDED and ended.end_reason is EndReason.ENDED_BY_CALLER
    assert ended.ended_at is not None
    assert record.instance_id not in await upstream_ids(emulator)
    assert [c.in_use for c in await sessions.capacity()] == [0, 0]


async def test_end_twice_returns_the_same_ended_session(sessions: SessionService) -> None:
    record = await sessions.create(voice_spec())

    first = await sessions.end(record.session_id)
    second = await sessions.end(record.session_id)

    assert second == first


async def test_end_when_zego_already_lost_it(sessions: SessionService, emulator: Emulator) -> None:
    record = await sessions.create(voice_spec())
    assert record.instance_id
    await delete_behind_our_back(emulator, record.instance_id)

    ended = await sessions.end(record.session_id)

    assert ended.state is S.ENDED and ended.end_reason is EndReason.UPSTREAM_GONE


async def test_graceful_end_is_confirmed_by_the_reaper(
    sessions: SessionService, emulator: Emulator, clock: FakeClock
) -> None:
    record = await sessions.create(voice_spec())
    ending = await sessions.end(record.session_id, graceful=True, graceful_timeout_seconds=5)
    assert ending.state is S.ENDING and ending.end_reason is EndReason.ENDED_BY_CALLER

    reaper = Reaper(sessions, settings=ReaperSettings(ending_timeout_seconds=60), clock=clock)
    assert (await reaper.run_once()).ended == 0  # too early to look
    clock.advance(61)
    report = await reaper.run_once()

    # The idle agent was destroyed at once; the reaper records it with the reason the caller gave.
    assert report.ended == 1
    ended = await sessions.get(record.session_id)
    assert ended.state is S.ENDED and ended.end_reason is EndReason.ENDED_BY_CALLER


async def test_end_of_a_pending_session_is_refused(sessions: SessionService, emulator: Emulator) -> None:
    await emulator.fault(action="CreateAgentInstance", latency_ms=300, count=1)
    creating = asyncio.create_task(sessions.create(voice_spec()))
    await eventually(lambda: create_in_flight(sessions))
    (pending,) = await sessions.ledger.sessions_in_states(frozenset({S.PENDING}))

    with pytest.raises(FailedPrecondition):
        await sessions.end(pending.session_id)

    assert (await creating).state is S.STARTING


# --- control ---------------------------------------------------------------------------------------


async def test_control_reaches_a_running_session(sessions: SessionService) -> None:
    record = await sessions.create(voice_spec())

    async def call(instance_id: str) -> str:
        assert instance_id == record.instance_id
        return f"round {await sessions.zego.interrupt(instance_id)}"

    assert (await sessions.control(record.session_id, call)).startswith("round ")


async def test_control_on_an_ended_session_is_a_failed_precondition(sessions: SessionService) -> None:
    record = await sessions.create(voice_spec())
    await sessions.end(record.session_id)
    called: list[str] = []

    async def call(instance_id: str) -> None:
        called.append(instance_id)

    with pytest.raises(FailedPrecondition):
        await sessions.control(record.session_id, call)
    assert called == []  # ZEGO was not asked


async def test_control_when_zego_lost_the_instance_ends_the_session(
    sessions: SessionService, emulator: Emulator
) -> None:
    record = await sessions.create(voice_spec())
    assert record.instance_id
    await delete_behind_our_back(emulator, record.instance_id)

    with pytest.raises(FailedPrecondition):
        await sessions.interrupt(record.session_id)

    ended = await sessions.get(record.session_id)
    assert ended.state is S.ENDED and ended.end_reason is EndReason.UPSTREAM_GONE
    assert [c.in_use for c in await sessions.capacity()] == [0, 0]
