"""The per-turn latency tracker: user and API turns, barge-in, abandonment and budget breaches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.domain.event_log import EventBus, EventLog
from service.domain.events import EventFilter, EventType, NewEvent
from service.domain.latency import LatencyTracker
from service.domain.model import NewSession, SessionKind, TurnStats
from service.store.sqlite import SqliteLedger
from tests.backends import LedgerFactory

SID = "s1"


class Recorder:
    def __init__(self) -> None:
        self.turns: list[tuple[str, str, float, bool]] = []
        self.abandoned: list[tuple[str, str]] = []
        self.stages: list[tuple[str, float]] = []

    def interaction(self, kind: str, trigger: str, seconds: float, budget_exceeded: bool) -> None:
        self.turns.append((kind, trigger, round(seconds, 3), budget_exceeded))

    def turn_abandoned(self, kind: str, trigger: str) -> None:
        self.abandoned.append((kind, trigger))

    def zego_stage(self, stage: str, seconds: float) -> None:
        self.stages.append((stage, seconds))


@pytest.fixture
async def ledger(tmp_path: Path, make_ledger: LedgerFactory) -> AsyncIterator[SqliteLedger]:
    store = make_ledger(tmp_path / "l.db")
    await store.open()
    new = NewSession(
        SID, SessionKind.DIGITAL_HUMAN, "a", "u", "r", "au", "as", "us", {"team": "x"}, 60, None, None, 0.0
    )
    await store.reserve_session(new, 10)
    yield store
    await store.close()


@pytest.fixture
async def tracked(ledger: SqliteLedger) -> AsyncIterator[tuple[LatencyTracker, EventLog, Recorder]]:
    recorder = Recorder()
    log = EventLog(ledger, EventBus())
    await log.start()
    tracker = LatencyTracker(ledger, log, recorder, budget_seconds=1.5, clock=lambda: 1000.0)
    log.on_event = tracker.on_event
    async with tracker:
        yield tracker, log, recorder


_seq = iter(range(1, 10_000))


async def emit(log: EventLog, kind: EventType, round_: int, at_ms: int, **data: Any) -> None:
    await log.append(NewEvent(kind, SID, "i1", "a", "r", at_ms, at_ms / 1000, next(_seq), round_, data))


async def user_turn(
    log: EventLog, round_: int, start: int, asr: int, think: int, llm: int, speak: int
) -> None:
    await emit(log, EventType.USER_SPEECH, round_, start - 500, action="SPEAK_BEGIN")
    await emit(log, EventType.USER_SPEECH, round_, start, action="SPEAK_END")
    await emit(log, EventType.ASR_RESULT, round_, start + asr, text="hi")
    await emit(log, EventType.AGENT_STATUS, round_, start + think, status="THINKING")
    await emit(log, EventType.LLM_RESULT, round_, start + llm, text="hello")
    await emit(log, EventType.AGENT_STATUS, round_, start + speak, status="SPEAKING")
    await emit(log, EventType.AGENT_STATUS, round_, start + speak + 900, status="IDLE")


async def test_user_turns_are_measured_from_speech_end_to_speaking(
    tracked: tuple[LatencyTracker, EventLog, Recorder], ledger: SqliteLedger
) -> None:
    tracker, log, recorder = tracked
    await user_turn(log, 10, 100_000, asr=200, think=250, llm=700, speak=900)
    await user_turn(log, 20, 200_000, asr=300, think=350, llm=1500, speak=2100)
    await tracker.drain()
    assert recorder.turns == [
        ("digital_human", "user_speech", 0.9, False),
        ("digital_human", "user_speech", 2.1, True),
    ]
    stats = await turn_stats(ledger)
    assert (stats.turns, stats.budget_breaches, stats.max_ms, stats.p50_ms) == (2, 1, 2100.0, 900.0)
    breaches = await ledger.events_after(
        0, 10, EventFilter(event_types=frozenset({EventType.LATENCY_BUDGET_EXCEEDED}))
    )
    [breach] = breaches
    assert breach.round == 20 and breach.labels == {"team": "x"}
    assert breach.data["latency_seconds"] == 2.1 and breach.data["budget_seconds"] == 1.5
    assert breach.data["stages"] == {"asr": 0.3, "llm": 1.15, "tts": 0.6}


async def test_barge_in_and_interruptions_abandon_turns(
    tracked: tuple[LatencyTracker, EventLog, Recorder], ledger: SqliteLedger
) -> None:
    tracker, log, recorder = tracked
    await emit(log, EventType.USER_SPEECH, 1, 1000, action="SPEAK_END")
    await emit(log, EventType.AGENT_STATUS, 1, 1200, status="THINKING")
    await emit(log, EventType.USER_SPEECH, 2, 1300, action="SPEAK_BEGIN")  # barge-in before SPEAKING
    await emit(log, EventType.USER_SPEECH, 2, 1800, action="SPEAK_END")
    await emit(log, EventType.INTERRUPTED, 2, 1900, reason=4, played_text="")
    await tracker.drain()
    assert recorder.turns == []
    assert recorder.abandoned == [("digital_human", "user_speech")] * 2
    assert (await turn_stats(ledger)).abandoned == 2


async def test_api_turns_match_their_round_even_when_speaking_comes_first(
    tracked: tuple[LatencyTracker, EventLog, Recorder],
) -> None:
    tracker, log, recorder = tracked
    tracker.api_turn(SID, "speak", 7, 100.0)
    await emit(log, EventType.AGENT_STATUS, 7, 100_400, status="SPEAKING")
    await emit(log, EventType.AGENT_STATUS, 8, 200_300, status="SPEAKING")  # the callback beat the RPC
    tracker.api_turn(SID, "send_text", 8, 200.0)
    await tracker.drain()
    assert recorder.turns == [
        ("digital_human", "speak", 0.4, False),
        ("digital_human", "send_text", 0.3, False),
    ]


async def test_session_end_abandons_pending_turns_and_reports_zego_stages(
    tracked: tuple[LatencyTracker, EventLog, Recorder],
) -> None:
    tracker, log, recorder = tracked
    await emit(log, EventType.USER_SPEECH, 3, 5000, action="SPEAK_END")
    latency = {"LLMTTFT": 613, "LLMTPS": 11.5, "TTSAudioFirstFrameTime": 783, "TotalCost": 1693}
    await emit(log, EventType.ENDED, 0, 6000, reason="USER_ABSENT", zego_code=1202, latency=latency)
    await tracker.drain()
    assert recorder.abandoned == [("digital_human", "user_speech")]
    assert recorder.stages == [("llm_ttft", 0.613), ("tts_first_frame", 0.783), ("total", 1.693)]


async def turn_stats(ledger: SqliteLedger) -> TurnStats:
    """The session's turn statistics, as GetSession reads them."""
    view = await ledger.session_view(SID)
    assert view is not None
    return view[2]
