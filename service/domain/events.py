"""Session events: the gateway's normalized form of ZEGO callbacks (spec §8-§9), plus the events
the gateway synthesizes itself (a missing ``ended``, a latency-budget breach).

``normalize_callback`` turns one verified callback body into a ``NewEvent``; the store assigns
the cursor. ``data`` holds the payload in plain JSON types, named after the proto fields, so the
API layer maps it without knowing ZEGO's spellings.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from service.domain.callback_schema import (
    INT32_MAX,
    INT64_MIN,
    TIMESTAMP_MS_MAX,
    CallbackError,
    Problem,
    integer,
    number,
    text,
)
from service.domain.model import LabelOp, LabelRequirement

__all__ = [
    "ZEGO_EVENTS",
    "CallbackError",
    "Event",
    "EventFilter",
    "EventType",
    "NewEvent",
    "exception_category",
    "normalize_callback",
]


class EventType(enum.StrEnum):
    """The kinds of event (proto EventType without the prefix)."""

    CREATED = "created"
    ENDED = "ended"
    USER_SPEECH = "user_speech"
    ASR_RESULT = "asr_result"
    LLM_RESULT = "llm_result"
    AGENT_STATUS = "agent_status"
    INTERRUPTED = "interrupted"
    EXCEPTION = "exception"
    META_INFO = "meta_info"
    USER_AUDIO = "user_audio"
    LATENCY_BUDGET_EXCEEDED = "latency_budget_exceeded"


ZEGO_EVENTS: dict[str, EventType] = {
    "AgentInstanceCreated": EventType.CREATED,
    "AgentInstanceDeleted": EventType.ENDED,
    "UserSpeakAction": EventType.USER_SPEECH,
    "ASRResult": EventType.ASR_RESULT,
    "LLMResult": EventType.LLM_RESULT,
    "AgentInstanceStatus": EventType.AGENT_STATUS,
    # Deprecated name of AgentInstanceStatus, still seen in ZEGO's own examples (spec §8.3).
    "AgentSpeakAction": EventType.AGENT_STATUS,
    "Interrupted": EventType.INTERRUPTED,
    "Exception": EventType.EXCEPTION,
    "AgentInstanceMetaInfo": EventType.META_INFO,
    "UserAudioData": EventType.USER_AUDIO,
}
"""ZEGO's event names (the ``Event`` field) and what they become."""


@dataclass(frozen=True)
class NewEvent:
    """An event before the log assigns its cursor."""

    event_type: EventType
    session_id: str | None
    instance_id: str | None
    agent_id: str
    room_id: str
    event_time_ms: int
    received_at: float
    sequence: int | None
    """ZEGO's Sequence; None for synthesized events (they cannot be duplicates)."""
    round: int | None
    data: dict[str, Any]
    raw: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    agent_user_id: str = ""
    """From the callback envelope: matches a callback to a session whose instance id is unknown."""
    hidden: bool = False
    """Stored for dedupe and audit, never delivered (a second end after the session ended)."""
    owner: str = ""
    """The owner of the event's session; empty until the event is matched to a session."""
    trace_id: str = ""
    """The trace it was produced in (a callback's span, or the RPC that synthesized it); empty when
    untraced. Set by ``EventLog`` from the current span unless the producer set it."""


@dataclass(frozen=True)
class Event(NewEvent):
    """A logged event."""

    cursor: int = 0
    unreadable: str = ""
    """Why the stored row could not be read back ("" when it could). Such an event is delivered
    marked unreadable, in its place; ``data`` then holds only ``stored_type`` (the row's type text),
    and ``event_type`` is that type when known, else EXCEPTION (a placeholder nothing matches on)."""


@dataclass(frozen=True)
class EventFilter:
    """Which events a subscriber wants; empty fields match everything."""

    session_ids: frozenset[str] = frozenset()
    agent_id: str = ""
    room_id: str = ""
    event_types: frozenset[EventType] = frozenset()
    label_selector: tuple[LabelRequirement, ...] = ()
    owner: str | None = None
    """Only events of this principal's sessions; None for everyone's (viewers and admins)."""

    def matches(self, event: Event) -> bool:
        """Whether a live event passes the filter (the store applies the same rules in SQL)."""
        if self.owner is not None and event.owner != self.owner:
            return False
        if self.session_ids and event.session_id not in self.session_ids:
            return False
        if self.agent_id and event.agent_id != self.agent_id:
            return False
        if self.room_id and event.room_id != self.room_id:
            return False
        if self.event_types:
            if event.event_type not in self.event_types:
                return False
        elif event.event_type is EventType.USER_AUDIO:
            return False  # large: only for subscribers who ask for it by type
        return all(_label_ok(req, event.labels) for req in self.label_selector)


def _label_ok(req: LabelRequirement, labels: dict[str, str]) -> bool:
    present = req.key in labels
    if req.op is LabelOp.EQUALS:
        return present and labels[req.key] == req.value
    if req.op is LabelOp.NOT_EQUALS:
        return not present or labels[req.key] != req.value
    if req.op is LabelOp.EXISTS:
        return present
    return not present


def exception_category(code: int) -> str:
    """Spec §7.3: the stage an Exception code comes from."""
    if 1100 <= code < 1200:
        return "im"
    if 1200 <= code < 1300:
        return "rtc"
    if 2100 <= code < 2200:
        return "asr"
    if 2200 <= code < 2300:
        return "llm"
    if 2300 <= code < 2400:
        return "tts"
    if 1000 <= code < 2000:
        return "agent"
    return "unknown"


def _latency(data: dict[str, Any]) -> dict[str, Any] | None:
    """Spec §10's LatencyData, the known fields only (ms counts are averages: floats round)."""
    latency = data.get("LatencyData")
    if latency is None:
        return None
    if not isinstance(latency, dict):
        raise CallbackError("Data.LatencyData", "must be an object")
    path = "Data.LatencyData"
    values: dict[str, float | None] = {
        key: integer(latency, key, path, rounding=True)
        for key in ("LLMTTFT", "TTSAudioFirstFrameTime", "TotalCost")
    }
    values["LLMTPS"] = number(latency, "LLMTPS", path)
    return {key: value for key, value in values.items() if value is not None}


def _payload(event_type: EventType, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` for one event type, every field checked against spec §8.3 (and §10)."""
    d = "Data"
    if event_type is EventType.CREATED:
        return {"created_time_ms": integer(data, "CreatedTimestamp", d, high=TIMESTAMP_MS_MAX)}
    if event_type is EventType.ENDED:
        return {
            "zego_code": integer(data, "Code", d, low=INT64_MIN) or 0,
            "deleted_time_ms": integer(data, "DeletedTimestamp", d, high=TIMESTAMP_MS_MAX),
            "latency": _latency(data),
            "synthesized": False,
        }
    if event_type is EventType.USER_SPEECH:
        return {"action": text(data, "Action", d), "user_id": text(data, "UserId", d)}
    if event_type is EventType.ASR_RESULT:
        return {"text": text(data, "Text", d), "user_id": text(data, "UserId", d)}
    if event_type is EventType.LLM_RESULT:
        return {"text": text(data, "Text", d)}
    if event_type is EventType.AGENT_STATUS:
        return {"status": text(data, "Status", d).upper()}
    if event_type is EventType.INTERRUPTED:
        return {
            "reason": integer(data, "Reason", d, low=INT64_MIN) or 0,
            "played_text": text(data, "PlayedText", d),
        }
    if event_type is EventType.EXCEPTION:
        code = integer(data, "Code", d, low=INT64_MIN) or 0
        return {"code": code, "message": text(data, "Message", d), "category": exception_category(code)}
    if event_type is EventType.META_INFO:
        # Free-form: kept as its JSON text, which any shape ZEGO may send converts from.
        meta = json.dumps(data.get("MetaInfo"), ensure_ascii=False, separators=(",", ":"))
        return {"meta_info_json": meta}
    if event_type is EventType.USER_AUDIO:
        return {
            "user_id": text(data, "UserId", d),
            "sample_rate": integer(data, "SampleRate", d, high=INT32_MAX) or 16000,
            "format": text(data, "Format", d) or "pcm",
            "audio_base64": text(data, "Audio", d),
        }
    raise AssertionError(f"no payload for {event_type}")  # every ZEGO_EVENTS value is handled above


def normalize_callback(body: dict[str, Any], raw: str, received_at: float) -> NewEvent:
    """One verified ZEGO callback (already through ``parse_body``) -> a NewEvent (no session matched).

    Raises:
        CallbackError: a field is missing, mistyped or out of range (spec §8.2, §8.3, §10), or the
            event is unknown.
    """
    name = body.get("Event")
    if not isinstance(name, str) or name not in ZEGO_EVENTS:
        shown = name[:40] if isinstance(name, str) else type(name).__name__
        raise CallbackError("Event", f"unknown event {shown!r}", Problem.UNKNOWN_EVENT)
    event_type = ZEGO_EVENTS[name]
    integer(body, "AppId")
    instance_id = body.get("AgentInstanceId")
    if isinstance(instance_id, int) and not isinstance(instance_id, bool):
        instance_id = str(integer(body, "AgentInstanceId"))
    if not isinstance(instance_id, str) or not instance_id:
        raise CallbackError("AgentInstanceId", "is required (a string)", Problem.MISSING)
    if len(instance_id) > 128:
        raise CallbackError("AgentInstanceId", "is longer than 128 characters", Problem.OUT_OF_RANGE)
    data = body.get("Data")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise CallbackError("Data", "must be an object")
    sequence = integer(body, "Sequence", required=True)
    return NewEvent(
        event_type=event_type,
        session_id=None,
        instance_id=instance_id,
        agent_id=text(body, "AgentId"),
        room_id=text(body, "RoomId"),
        event_time_ms=integer(body, "Timestamp", required=True, high=TIMESTAMP_MS_MAX) or 0,
        received_at=received_at,
        sequence=sequence,
        round=integer(data, "Round", "Data"),
        data=_payload(event_type, data),
        raw=raw,
        agent_user_id=text(body, "AgentUserId"),
    )
