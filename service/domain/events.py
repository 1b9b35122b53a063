"""Session events: the gateway's normalized form of ZEGO callbacks (spec §8-§9), plus the events
the gateway synthesizes itself (a missing ``ended``, a latency-budget breach).

``normalize_callback`` turns one verified callback body into a ``NewEvent``; the store assigns
the cursor. ``data`` holds the payload in plain JSON types, named after the proto fields, so the
API layer maps it without knowing ZEGO's spellings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

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


class CallbackError(ValueError):
    """A callback body that cannot be a ZEGO event; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


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


def _int(body: dict[str, Any], key: str, *, required: bool = True) -> int | None:
    value = body.get(key)
    if value is None and not required:
        return None
    # bool is an int in Python; JSON true is never a valid number here.
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.isdigit():
            return int(value)
        raise CallbackError(key, "must be an integer")
    return value


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    return value if isinstance(value, str) else str(value)


def _payload(event_type: EventType, data: dict[str, Any]) -> dict[str, Any]:
    if event_type is EventType.CREATED:
        return {"created_time_ms": _int(data, "CreatedTimestamp", required=False)}
    if event_type is EventType.ENDED:
        latency = data.get("LatencyData") if isinstance(data.get("LatencyData"), dict) else None
        return {
            "zego_code": _int(data, "Code", required=False) or 0,
            "deleted_time_ms": _int(data, "DeletedTimestamp", required=False),
            "latency": latency,
            "synthesized": False,
        }
    if event_type is EventType.USER_SPEECH:
        return {"action": _str(data, "Action"), "user_id": _str(data, "UserId")}
    if event_type is EventType.ASR_RESULT:
        return {"text": _str(data, "Text"), "user_id": _str(data, "UserId")}
    if event_type is EventType.LLM_RESULT:
        return {"text": _str(data, "Text")}
    if event_type is EventType.AGENT_STATUS:
        return {"status": _str(data, "Status").upper()}
    if event_type is EventType.INTERRUPTED:
        return {"reason": _int(data, "Reason", required=False) or 0, "played_text": _str(data, "PlayedText")}
    if event_type is EventType.EXCEPTION:
        code = _int(data, "Code", required=False) or 0
        return {"code": code, "message": _str(data, "Message"), "category": exception_category(code)}
    if event_type is EventType.META_INFO:
        meta = data.get("MetaInfo")
        return {"meta_info": meta if isinstance(meta, dict) else {}}
    if event_type is EventType.USER_AUDIO:
        return {
            "user_id": _str(data, "UserId"),
            "sample_rate": _int(data, "SampleRate", required=False) or 16000,
            "format": _str(data, "Format") or "pcm",
            "audio_base64": _str(data, "Audio"),
        }
    return dict(data)


def normalize_callback(body: dict[str, Any], raw: str, received_at: float) -> NewEvent:
    """One verified ZEGO callback -> a NewEvent (no session matched yet).

    Raises:
        CallbackError: a required envelope field is missing or mistyped, or the event is unknown.
    """
    name = body.get("Event")
    if not isinstance(name, str) or name not in ZEGO_EVENTS:
        raise CallbackError("Event", f"unknown event {name!r}")
    event_type = ZEGO_EVENTS[name]
    instance_id = body.get("AgentInstanceId")
    if not isinstance(instance_id, str | int) or isinstance(instance_id, bool) or not str(instance_id):
        raise CallbackError("AgentInstanceId", "is required")
    data = body.get("Data") or {}
    if not isinstance(data, dict):
        raise CallbackError("Data", "must be an object")
    sequence = _int(body, "Sequence")
    assert sequence is not None
    if not 0 <= sequence < 2**63:
        raise CallbackError("Sequence", "must fit in a signed 64-bit integer")
    round_ = _int(data, "Round", required=False)
    return NewEvent(
        event_type=event_type,
        session_id=None,
        instance_id=str(instance_id),
        agent_id=_str(body, "AgentId"),
        room_id=_str(body, "RoomId"),
        event_time_ms=_int(body, "Timestamp") or 0,
        received_at=received_at,
        sequence=sequence,
        round=round_,
        data=_payload(event_type, data),
        raw=raw,
        agent_user_id=_str(body, "AgentUserId"),
    )
