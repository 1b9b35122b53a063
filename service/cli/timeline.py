"""A session's history as one timeline: its transitions and every event, with each turn's latency.

A turn is measured as the gateway measures it (``service.domain.latency``): from the user's
SPEAK_END of a Round to the agent's SPEAKING for that same Round, both on ZEGO's own timestamps.
The gateway's ``latency_budget_exceeded`` events are shown as they are; the CLI's own turn figures
only label the timeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from agentgw_client.gen.agentgw.v1 import session_event_pb2 as ev
from agentgw_client.gen.agentgw.v1 import session_pb2
from service.cli.output import enum_name, to_dict

__all__ = ["TimelineRow", "Turn", "build_timeline", "describe_event", "turns"]


@dataclass(frozen=True)
class Turn:
    """One user turn: SPEAK_END to SPEAKING of the same Round."""

    round: int
    latency_seconds: float
    budget_seconds: float

    @property
    def breached(self) -> bool:
        """Slower than the budget."""
        return self.latency_seconds > self.budget_seconds

    def to_json(self) -> dict[str, Any]:
        """The JSON form of ``sessions show``."""
        return {
            "round": str(self.round),
            "latency_seconds": round(self.latency_seconds, 3),
            "budget_exceeded": self.breached,
        }


@dataclass(frozen=True)
class TimelineRow:
    """One line of the timeline."""

    time: Timestamp
    what: str
    detail: str
    turn: Turn | None = None


def _seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def turns(events: Iterable[ev.SessionEvent], budget_seconds: float) -> dict[int, Turn]:
    """Every completed turn, keyed by its Round."""
    speech_end: dict[int, float] = {}
    done: dict[int, Turn] = {}
    for event in events:
        kind = event.WhichOneof("payload")
        if kind == "user_speech" and event.user_speech.action == ev.USER_SPEECH_ACTION_END:
            speech_end[event.round] = _seconds(event.event_time)
        elif (
            kind == "agent_status"
            and event.agent_status.status == ev.AGENT_STATE_SPEAKING
            and event.round in speech_end
            and event.round not in done
        ):
            latency = _seconds(event.event_time) - speech_end[event.round]
            done[event.round] = Turn(event.round, max(0.0, latency), budget_seconds)
    return done


def describe_event(event: ev.SessionEvent) -> tuple[str, str]:
    """The event's type and a short human description of its payload."""
    kind = event.WhichOneof("payload") or "unknown"
    if kind == "agent_status":
        return kind, enum_name(ev.AgentState, event.agent_status.status, "AGENT_STATE_")
    if kind == "user_speech":
        return kind, enum_name(ev.UserSpeechAction, event.user_speech.action, "USER_SPEECH_ACTION_")
    if kind == "asr_result":
        return kind, repr(event.asr_result.text)
    if kind == "llm_result":
        return kind, repr(event.llm_result.text)
    if kind == "interrupted":
        reason = enum_name(ev.InterruptReason, event.interrupted.reason, "INTERRUPT_REASON_")
        return kind, f"{reason} played={event.interrupted.played_text!r}"
    if kind == "exception":
        return kind, f"{event.exception.code} {event.exception.message}"
    if kind == "ended":
        reason = enum_name(session_pb2.EndReason, event.ended.reason, "END_REASON_")
        return kind, f"{reason} zego_code={event.ended.zego_code}"
    if kind == "created":
        return kind, ""
    if kind == "latency_budget_exceeded":
        breach = event.latency_budget_exceeded
        return kind, f"{breach.trigger} {breach.latency_seconds:.3f}s > {breach.budget_seconds:.1f}s"
    payload = to_dict(getattr(event, kind)) if kind != "unknown" else {}
    return kind, ", ".join(f"{k}={v}" for k, v in payload.items())


def build_timeline(
    transitions: Sequence[session_pb2.SessionTransition],
    events: Sequence[ev.SessionEvent],
    budget_seconds: float,
) -> tuple[list[TimelineRow], dict[int, Turn]]:
    """Transitions and events in time order; each SPEAKING that ends a turn carries the turn."""
    by_round = turns(events, budget_seconds)
    rows: list[TimelineRow] = []
    for t in transitions:
        frm = enum_name(session_pb2.SessionState, t.from_state, "SESSION_STATE_")
        to = enum_name(session_pb2.SessionState, t.to_state, "SESSION_STATE_")
        detail = " ".join(part for part in (t.cause, t.detail) if part)
        frm = "" if frm == "UNSPECIFIED" else f"{frm} "  # the row's creation
        rows.append(TimelineRow(t.time, f"state {frm}-> {to}", detail))
    for event in events:
        what, detail = describe_event(event)
        turn = None
        if what == "agent_status" and event.agent_status.status == ev.AGENT_STATE_SPEAKING:
            found = by_round.get(event.round)
            turn = found if found is not None and not _claimed(rows, found) else None
        if event.round:
            detail = f"round {event.round} {detail}"
        rows.append(TimelineRow(event.event_time, what, detail, turn))
    rows.sort(key=lambda row: _seconds(row.time))
    return rows, by_round


def _claimed(rows: Sequence[TimelineRow], turn: Turn) -> bool:
    return any(row.turn is turn for row in rows)
