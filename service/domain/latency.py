"""Per-turn interaction latency, measured against the budget (ZEGO advertises < 1.5 s).

A turn is measured from its start to the agent starting to speak *for that turn's Round*:

* ``user_speech``: UserSpeakAction SPEAK_END (round N) -> AgentInstanceStatus SPEAKING (round N),
  both timed by ZEGO's own callback Timestamps (spec §9 sequence 1: the round is fixed when
  speech begins and is shared by SPEAK_END, ASRResult, THINKING and SPEAKING).
* ``send_text`` / ``speak``: the RPC's arrival at the gateway -> SPEAKING for the Round ZEGO
  returned (the callback can beat the RPC's return, so an early SPEAKING is remembered briefly).

A turn that never reaches SPEAKING is *abandoned*, not a latency: barge-in (a new SPEAK_BEGIN),
an Interrupted or IDLE for its round first, or the session's end. A turn over the budget emits a
``latency_budget_exceeded`` event into the session's stream, with the stages that are known.

Events reach the tracker through a queue drained by one task, so the event path never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from service.domain.event_log import EventLog
from service.domain.events import Event, EventType, NewEvent
from service.store.base import Ledger

__all__ = ["LatencyObserver", "LatencyTracker"]

log = logging.getLogger("agentgw.latency")

_EARLY_SPEAKING_TTL_MS = 10_000.0
_QUEUE_LIMIT = 100_000


class LatencyObserver(Protocol):
    """Metrics hooks (``service.metrics.Metrics`` satisfies it)."""

    def interaction(self, kind: str, trigger: str, seconds: float, budget_exceeded: bool) -> None:
        """A turn reached SPEAKING after ``seconds``."""

    def turn_abandoned(self, kind: str, trigger: str) -> None:
        """A turn never reached SPEAKING."""

    def zego_stage(self, stage: str, seconds: float) -> None:
        """ZEGO's own per-session average of a stage, from LatencyData at deletion."""


@dataclass
class _Turn:
    trigger: str
    started_ms: float
    marks: dict[str, float] = field(default_factory=dict)


@dataclass
class _SessionTurns:
    kind: str
    pending: dict[int, _Turn] = field(default_factory=dict)
    early_speaking: dict[int, float] = field(default_factory=dict)


class LatencyTracker:
    """Measures turns from the event stream; records them and reports breaches."""

    def __init__(
        self,
        ledger: Ledger,
        events: EventLog,
        observer: LatencyObserver,
        *,
        budget_seconds: float = 1.5,
        clock: Callable[[], float] = time.time,
        recording: Callable[[], bool] = lambda: True,
    ) -> None:
        self._ledger = ledger
        # In a fleet every replica tracks every turn (fed by its tailer, in cursor order), so any of
        # them can take over; only the lease holder records (service.domain.shared_turns).
        self._recording = recording
        self._events = events
        self._observer = observer
        self.budget_seconds = budget_seconds
        self._clock = clock
        self._sessions: dict[str, _SessionTurns] = {}
        self._queue: asyncio.Queue[Event | tuple[str, str, int, float]] = asyncio.Queue(_QUEUE_LIMIT)
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> LatencyTracker:
        self._task = asyncio.create_task(self._run(), name="latency-tracker")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def drain(self) -> None:
        """Wait until every queued event is processed (tests and shutdown)."""
        await self._queue.join()

    # --- inputs ------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """The EventLog hook: never blocks the event path."""
        if event.session_id is None or event.event_type is EventType.LATENCY_BUDGET_EXCEEDED:
            return
        self._offer(event)

    def api_turn(self, session_id: str, trigger: str, round_: int, started_at: float) -> None:
        """SendText or Speak returned ``round_``; the RPC arrived at ``started_at`` (seconds)."""
        self._offer((session_id, trigger, round_, started_at * 1000))

    def _offer(self, item: Event | tuple[str, str, int, float]) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("latency tracker is behind; a turn observation was dropped")

    # --- processing ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._process(item)
            except Exception:
                log.exception("latency tracking failed for one event")
            finally:
                self._queue.task_done()

    async def _session(self, session_id: str) -> _SessionTurns:
        state = self._sessions.get(session_id)
        if state is None:
            record = await self._ledger.get_session(session_id)
            state = self._sessions[session_id] = _SessionTurns(
                kind=record.kind.value if record else "unknown"
            )
        return state

    async def _process(self, item: Event | tuple[str, str, int, float]) -> None:
        if isinstance(item, tuple):
            session_id, trigger, round_, started_ms = item
            state = await self._session(session_id)
            spoken_at = state.early_speaking.pop(round_, None)
            turn = _Turn(trigger, started_ms)
            if spoken_at is not None:
                await self._complete(session_id, state, round_, turn, spoken_at, None)
            else:
                state.pending[round_] = turn
            return
        await self._on_event(item)

    async def _on_event(self, event: Event) -> None:
        assert event.session_id is not None
        state = await self._session(event.session_id)
        kind, data, at, rnd = event.event_type, event.data, float(event.event_time_ms), event.round
        if kind is EventType.ENDED:
            self._zego_stages(data.get("latency"))
            for round_, turn in list(state.pending.items()):
                await self._abandon(event.session_id, state, round_, turn)
            self._sessions.pop(event.session_id, None)
            return
        if rnd is None:
            return
        if kind is EventType.USER_SPEECH and data.get("action") == "SPEAK_BEGIN":
            # Barge-in: whatever had not started speaking yet never will.
            for round_, turn in list(state.pending.items()):
                if round_ != rnd:
                    await self._abandon(event.session_id, state, round_, turn)
        elif kind is EventType.USER_SPEECH and data.get("action") == "SPEAK_END":
            state.pending[rnd] = _Turn("user_speech", at)
        elif kind is EventType.AGENT_STATUS and data.get("status") == "SPEAKING":
            waiting = state.pending.pop(rnd, None)
            if waiting is None:
                self._remember_early(state, rnd, at)
            else:
                await self._complete(event.session_id, state, rnd, waiting, at, event)
        elif (
            kind is EventType.INTERRUPTED or (kind is EventType.AGENT_STATUS and data.get("status") == "IDLE")
        ) and (rnd in state.pending):
            await self._abandon(event.session_id, state, rnd, state.pending[rnd])
        elif rnd in state.pending:
            mark = {EventType.ASR_RESULT: "asr", EventType.LLM_RESULT: "llm"}.get(kind)
            if kind is EventType.AGENT_STATUS and data.get("status") == "THINKING":
                mark = "thinking"
            if mark is not None:
                state.pending[rnd].marks.setdefault(mark, at)

    def _remember_early(self, state: _SessionTurns, round_: int, at: float) -> None:
        state.early_speaking[round_] = at
        for stale in [r for r, t in state.early_speaking.items() if at - t > _EARLY_SPEAKING_TTL_MS]:
            del state.early_speaking[stale]

    async def _abandon(self, session_id: str, state: _SessionTurns, round_: int, turn: _Turn) -> None:
        state.pending.pop(round_, None)
        if not self._recording():
            return
        self._observer.turn_abandoned(state.kind, turn.trigger)
        await self._ledger.record_turn(
            session_id,
            round_=round_,
            trigger=turn.trigger,
            outcome="abandoned",
            latency_ms=None,
            budget_exceeded=False,
            at=self._clock(),
        )

    async def _complete(
        self,
        session_id: str,
        state: _SessionTurns,
        round_: int,
        turn: _Turn,
        spoken_ms: float,
        event: Event | None,
    ) -> None:
        latency_ms = max(0.0, spoken_ms - turn.started_ms)
        exceeded = latency_ms > self.budget_seconds * 1000
        if not self._recording():
            return
        self._observer.interaction(state.kind, turn.trigger, latency_ms / 1000, exceeded)
        await self._ledger.record_turn(
            session_id,
            round_=round_,
            trigger=turn.trigger,
            outcome="spoken",
            latency_ms=latency_ms,
            budget_exceeded=exceeded,
            at=self._clock(),
        )
        if exceeded:
            await self._breach(session_id, round_, turn, latency_ms, spoken_ms, event)

    async def _breach(
        self,
        session_id: str,
        round_: int,
        turn: _Turn,
        latency_ms: float,
        spoken_ms: float,
        event: Event | None,
    ) -> None:
        record = await self._ledger.get_session(session_id)
        if record is None:
            return
        stages = _stages(turn, spoken_ms)
        now = self._clock()
        await self._events.append(
            NewEvent(
                event_type=EventType.LATENCY_BUDGET_EXCEEDED,
                session_id=session_id,
                instance_id=record.instance_id,
                agent_id=record.agent_id,
                room_id=record.room_id,
                event_time_ms=int(spoken_ms) if event is not None else int(now * 1000),
                received_at=now,
                sequence=None,
                round=round_,
                data={
                    "trigger": turn.trigger,
                    "latency_seconds": round(latency_ms / 1000, 4),
                    "budget_seconds": self.budget_seconds,
                    "stages": stages,
                },
                labels=record.labels,
                agent_user_id=record.agent_user_id,
                owner=record.owner,
                # The trace of the callback that closed the turn (it links to the CreateSession).
                trace_id=event.trace_id if event is not None else "",
            )
        )

    def _zego_stages(self, latency: object) -> None:
        if not isinstance(latency, dict) or not self._recording():
            return
        stages = (
            ("LLMTTFT", "llm_ttft"),
            ("TTSAudioFirstFrameTime", "tts_first_frame"),
            ("TotalCost", "total"),
        )
        for key, stage in stages:
            value = latency.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                self._observer.zego_stage(stage, float(value) / 1000)


def _stages(turn: _Turn, spoken_ms: float) -> dict[str, float]:
    """Where the time went, in seconds, as far as the callbacks tell."""
    marks, stages = turn.marks, {}
    if "asr" in marks:
        stages["asr"] = (marks["asr"] - turn.started_ms) / 1000
    llm_start = marks.get("thinking", marks.get("asr"))
    if llm_start is not None and "llm" in marks:
        stages["llm"] = (marks["llm"] - llm_start) / 1000
    if "llm" in marks:
        stages["tts"] = (spoken_ms - marks["llm"]) / 1000
    return {k: round(max(0.0, v), 4) for k, v in stages.items()}
