"""Logged events -> protobuf ``SessionEvent``, and the event filter from a request."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from google.protobuf import timestamp_pb2

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from service.api.session_convert import REASON_TO_PROTO
from service.domain.events import Event, EventFilter, EventType
from service.domain.model import EndReason, LabelRequirement
from service.domain.validation import Violations, parse_label_selector
from service.errors import InvalidArgument

__all__ = ["TYPE_FROM_PROTO", "agent_state", "event_filter", "event_to_proto", "fill_event"]

TYPE_TO_PROTO = {t: getattr(epb, f"EVENT_TYPE_{t.name}") for t in EventType}
MAX_STRUCT_DEPTH = 20
"""Deepest MetaInfo object also given as a Struct (callbacks are refused past 20 levels anyway)."""
TYPE_FROM_PROTO = {v: k for k, v in TYPE_TO_PROTO.items()}
_STATES = {
    "IDLE": epb.AGENT_STATE_IDLE,
    "LISTENING": epb.AGENT_STATE_LISTENING,
    "THINKING": epb.AGENT_STATE_THINKING,
    "SPEAKING": epb.AGENT_STATE_SPEAKING,
}


def agent_state(status: object) -> epb.AgentState.ValueType:
    """ZEGO's agent status (``IDLE``, ``SPEAKING``...; any case) as an ``AgentState``, for events and
    GetAgentStatus alike."""
    return _STATES.get(str(status).upper(), epb.AGENT_STATE_UNSPECIFIED)


_SPEECH = {"SPEAK_BEGIN": epb.USER_SPEECH_ACTION_BEGIN, "SPEAK_END": epb.USER_SPEECH_ACTION_END}
_CATEGORIES = {
    "agent": epb.EXCEPTION_CATEGORY_AGENT,
    "im": epb.EXCEPTION_CATEGORY_IM,
    "rtc": epb.EXCEPTION_CATEGORY_RTC,
    "asr": epb.EXCEPTION_CATEGORY_ASR,
    "llm": epb.EXCEPTION_CATEGORY_LLM,
    "tts": epb.EXCEPTION_CATEGORY_TTS,
}


def _ts_ms(ms: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(int(ms))
    return ts


def _latency(data: Any) -> epb.LatencyData | None:
    if not isinstance(data, dict):
        return None
    return epb.LatencyData(
        llm_ttft_ms=int(data.get("LLMTTFT") or 0),
        llm_tps=float(data.get("LLMTPS") or 0.0),
        tts_first_frame_ms=int(data.get("TTSAudioFirstFrameTime") or 0),
        total_cost_ms=int(data.get("TotalCost") or 0),
    )


def _depth(value: Any) -> int:
    """Nesting depth of plain JSON data (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _meta_info(msg: epb.MetaInfo, d: dict[str, Any]) -> None:
    """MetaInfo from its stored JSON text (rows before the text was kept hold a ``meta_info`` dict)."""
    if "meta_info_json" in d:
        text = str(d["meta_info_json"])
        meta = json.loads(text)
    else:
        meta = d.get("meta_info")
        text = json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
    msg.SetInParent()
    msg.meta_info_json = text
    # A Struct costs two or three nested messages a level: deeper ones would fail to parse at the
    # subscriber (protobuf's limit is 100), so those are only in meta_info_json.
    if isinstance(meta, dict) and _depth(meta) <= MAX_STRUCT_DEPTH:
        msg.meta_info.update(meta)


def _created(msg: epb.SessionEvent, d: dict[str, Any]) -> None:
    msg.created.SetInParent()
    if d.get("created_time_ms"):
        msg.created.created_time.CopyFrom(_ts_ms(d["created_time_ms"]))


def _ended(msg: epb.SessionEvent, d: dict[str, Any]) -> None:
    end_reason = EndReason(d["reason"]) if d.get("reason") in EndReason.__members__ else None
    msg.ended.reason = REASON_TO_PROTO[end_reason] if end_reason else spb.END_REASON_UNSPECIFIED
    msg.ended.zego_code = int(d.get("zego_code") or 0)
    msg.ended.synthesized = bool(d.get("synthesized"))
    latency = _latency(d.get("latency"))
    if latency is not None:
        msg.ended.latency.CopyFrom(latency)


def _user_speech(msg: epb.SessionEvent, d: dict[str, Any]) -> None:
    msg.user_speech.action = _SPEECH.get(str(d.get("action")), epb.USER_SPEECH_ACTION_UNSPECIFIED)
    msg.user_speech.user_id = str(d.get("user_id", ""))


def _asr_result(msg: epb.SessionEvent, d: dict[str, Any]) -> None:
    msg.asr_result.text = str(d.get("text", ""))
    msg.asr_result.user_id = str(d.get("user_id", ""))


def _llm_result(msg: epb.SessionEvent, d: dict[str, Any]) -> None:
    msg.llm_result.text = str(d.get("text", ""))


def _agent_status(msg: epb.SessionEvent, d: dict[str, Any]) -> None:
    msg.agent_status.status = agent_state(d.get("status"))


def _interrupted(msg: epb.SessionEvent, d: dict[str, Any]) -> None:
    interrupt = int(d.get("reason") or 0)
    msg.interrupted.reason = interrupt if 0 < interrupt <= 4 else 0  # type: ignore[assignment]
    msg.interrupted.played_text = str(d.get("played_text", ""))


def _exception(msg: epb.SessionEvent, d: dict[str, Any]) -> None:
    msg.exception.code = int(d.get("code") or 0)
    msg.exception.message = str(d.get("message", ""))
    msg.exception.category = _CATEGORIES.get(str(d.get("category")), epb.EXCEPTION_CATEGORY_UNSPECIFIED)


def _meta_info_event(msg: epb.SessionEvent, d: dict[str, Any]) -> None:
    _meta_info(msg.meta_info, d)


def _user_audio(msg: epb.SessionEvent, d: dict[str, Any]) -> None:
    msg.user_audio.user_id = str(d.get("user_id", ""))
    msg.user_audio.sample_rate = int(d.get("sample_rate") or 0)
    msg.user_audio.format = str(d.get("format", ""))
    try:
        msg.user_audio.audio = base64.b64decode(str(d.get("audio_base64", "")))
    except (binascii.Error, ValueError):
        msg.user_audio.audio = b""


def _latency_budget_exceeded(msg: epb.SessionEvent, d: dict[str, Any]) -> None:
    breach = msg.latency_budget_exceeded
    breach.trigger = str(d.get("trigger", ""))
    breach.latency_seconds = float(d.get("latency_seconds") or 0.0)
    breach.budget_seconds = float(d.get("budget_seconds") or 0.0)
    for stage, seconds in (d.get("stages") or {}).items():
        breach.stages[str(stage)] = float(seconds)


PAYLOADS: dict[EventType, Callable[[epb.SessionEvent, dict[str, Any]], None]] = {
    EventType.CREATED: _created,
    EventType.ENDED: _ended,
    EventType.USER_SPEECH: _user_speech,
    EventType.ASR_RESULT: _asr_result,
    EventType.LLM_RESULT: _llm_result,
    EventType.AGENT_STATUS: _agent_status,
    EventType.INTERRUPTED: _interrupted,
    EventType.EXCEPTION: _exception,
    EventType.META_INFO: _meta_info_event,
    EventType.USER_AUDIO: _user_audio,
    EventType.LATENCY_BUDGET_EXCEEDED: _latency_budget_exceeded,
}
"""Each event type's payload writer: the ``oneof payload`` field of ``SessionEvent`` from the stored
data (one function a type; a test keeps the table complete)."""


def fill_event(msg: epb.SessionEvent, event: Event, *, include_raw: bool = False) -> str:
    """Write a logged event into an empty ``SessionEvent`` in place; never raises for its values.

    In place, because a message set as a field is copied: the event-stream fills the one inside
    its response directly (replay and fan-out convert every event, so this is their hot path).

    Returns "" or, for an event that cannot be converted (the store marked it unreadable, or a
    value does not fit its proto field), why: ``msg`` is then the ``unreadable`` event in its place,
    with its cursor, so one bad row never ends a stream or a page. The caller counts and logs it.
    """
    if not event.unreadable:
        try:
            _fill(msg, event, include_raw)
            return ""
        except Exception as e:  # defence in depth: callbacks are validated before they are stored
            reason = f"{type(e).__name__}: {e}"[:300]
    else:
        reason = event.unreadable
    msg.Clear()
    _fill_unreadable(msg, event, reason, include_raw)
    return reason


def _set(msg: Any, name: str, value: Any) -> None:
    """Set one field of an unreadable event if the value fits; skip it otherwise."""
    try:
        setattr(msg, name, value)
    except (TypeError, ValueError):
        pass


def _fill_unreadable(msg: epb.SessionEvent, event: Event, reason: str, include_raw: bool) -> None:
    msg.cursor = event.cursor
    for name, value in (
        ("session_id", event.session_id or ""),
        ("agent_instance_id", event.instance_id or ""),
        ("agent_id", event.agent_id),
        ("room_id", event.room_id),
    ):
        _set(msg, name, value)
    if isinstance(event.received_at, float) and 0 <= event.received_at < 253402300800:
        msg.receive_time.seconds, msg.receive_time.nanos = divmod(int(event.received_at * 1e9), 1_000_000_000)
    if include_raw and isinstance(event.raw, str):
        _set(msg, "raw_json", event.raw)
    stored = event.data.get("stored_type", event.event_type.value) if event.unreadable else event.event_type
    stored = str(stored)
    msg.unreadable.SetInParent()
    _set(msg.unreadable, "reason", reason.encode("utf-8", "replace").decode("utf-8"))
    _set(msg.unreadable, "stored_type", stored[:100])
    if stored == event.event_type.value:
        msg.unreadable.type = TYPE_TO_PROTO[event.event_type]


def _fill(msg: epb.SessionEvent, event: Event, include_raw: bool) -> None:
    msg.cursor = event.cursor
    msg.session_id = event.session_id or ""
    msg.agent_instance_id = event.instance_id or ""
    msg.agent_id = event.agent_id
    msg.room_id = event.room_id
    # Timestamp's fields directly (as FromMilliseconds/FromNanoseconds would, at a fraction of the cost).
    seconds, millis = divmod(int(event.event_time_ms), 1000)
    stamp = msg.event_time
    stamp.seconds, stamp.nanos = seconds, millis * 1_000_000
    stamp = msg.receive_time
    stamp.seconds, stamp.nanos = divmod(int(event.received_at * 1e9), 1_000_000_000)
    msg.sequence = event.sequence or 0
    msg.round = event.round or 0
    if event.labels:
        labels = msg.labels
        for key, value in event.labels.items():  # a loop: the map's update() is generic, 2x slower
            labels[key] = value
    if include_raw and event.raw:
        msg.raw_json = event.raw
    if event.trace_id:
        msg.trace_id = event.trace_id
    PAYLOADS[event.event_type](msg, event.data)


def event_to_proto(event: Event, *, include_raw: bool = False) -> epb.SessionEvent:
    """The proto form of a logged event (marked ``unreadable`` when it cannot be converted)."""
    msg = epb.SessionEvent()
    fill_event(msg, event, include_raw=include_raw)
    return msg


def event_filter(flt: api.EventFilter, path: str = "filter", v: Violations | None = None) -> EventFilter:
    """The domain filter for a request's EventFilter; InvalidArgument names bad fields.

    Pass ``v`` to report the request's other violations (already collected there) in the same error.
    """
    v = Violations() if v is None else v
    v.check(len(flt.session_ids) <= 100, f"{path}.session_ids", "at most 100 sessions can be watched at once")
    for i, sid in enumerate(flt.session_ids):
        v.check(0 < len(sid) <= 64, f"{path}.session_ids[{i}]", "is not a session id")
    for i, kind in enumerate(flt.event_types):
        v.check(kind in TYPE_FROM_PROTO, f"{path}.event_types[{i}]", "is not a known event type")
    labels: tuple[LabelRequirement, ...] = ()
    try:
        labels = parse_label_selector(flt.label_selector, f"{path}.label_selector")
    except InvalidArgument as e:
        v.items.extend(e.violations)
    v.raise_if_any()
    return EventFilter(
        session_ids=frozenset(flt.session_ids),
        agent_id=flt.agent_id,
        room_id=flt.room_id,
        event_types=frozenset(TYPE_FROM_PROTO[t] for t in flt.event_types),
        label_selector=labels,
    )
