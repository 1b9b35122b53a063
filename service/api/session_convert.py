"""Ledger records -> protobuf sessions, and the enum tables between the two.

The ``*_fields`` functions return a message's constructor arguments, sub-messages as nested dicts:
protobuf builds the whole message from them in one call, without a Python object per sub-message
(a Timestamp each) to build and then copy in. GetSession builds its response that way.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any, TypeAlias

from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from service.domain.model import EndReason, SessionKind, SessionRecord, SessionState, Transition, TurnStats

__all__ = [
    "KIND_FROM_ONEOF",
    "KIND_FROM_PROTO",
    "KIND_TO_PROTO",
    "STATE_FROM_PROTO",
    "Fields",
    "decode_digital_human_config",
    "session_fields",
    "session_to_proto",
    "transition_fields",
    "turn_stats_fields",
]

log = logging.getLogger("agentgw.api")

KIND_TO_PROTO = {
    SessionKind.VOICE: spb.SESSION_KIND_VOICE,
    SessionKind.DIGITAL_HUMAN: spb.SESSION_KIND_DIGITAL_HUMAN,
    SessionKind.LIVE_DIGITAL_HUMAN: spb.SESSION_KIND_LIVE_DIGITAL_HUMAN,
}
KIND_FROM_PROTO = {v: k for k, v in KIND_TO_PROTO.items()}
KIND_FROM_ONEOF = {
    "voice": SessionKind.VOICE,
    "digital_human": SessionKind.DIGITAL_HUMAN,
    "live_digital_human": SessionKind.LIVE_DIGITAL_HUMAN,
}
STATE_TO_PROTO = {state: getattr(spb, f"SESSION_STATE_{state.value}") for state in SessionState}
STATE_FROM_PROTO = {v: k for k, v in STATE_TO_PROTO.items()}
REASON_TO_PROTO = {reason: getattr(spb, f"END_REASON_{reason.value}") for reason in EndReason}

Fields: TypeAlias = dict[str, Any]
"""A message's constructor arguments; a sub-message may be given as a nested dict."""

_NANOS = 1_000_000_000


def _timestamp(seconds: float | None) -> Fields | None:
    """A ``google.protobuf.Timestamp``'s fields (``None``: left unset), as ``FromNanoseconds`` sets them."""
    if seconds is None:
        return None
    whole, nanos = divmod(int(seconds * 1e9), _NANOS)
    return {"seconds": whole, "nanos": nanos}


def decode_digital_human_config(raw: str) -> spb.DigitalHumanConfig:
    """ZEGO's DigitalHumanConfig is base64 of JSON (spec §3); keep the raw string, decode what it says.

    A config that does not decode is still returned raw: the client SDK is its real consumer.
    """
    config = spb.DigitalHumanConfig(raw=raw)
    try:
        data = json.loads(base64.b64decode(raw, validate=False))
    except (binascii.Error, ValueError):
        log.warning("DigitalHumanConfig is not base64 JSON; returned raw only")
        return config
    if not isinstance(data, dict):
        return config
    config.digital_human_id = str(data.get("DigitalHumanId", ""))
    for stream in data.get("Streams") or []:
        if isinstance(stream, dict):
            config.streams.append(
                spb.DigitalHumanStream(
                    room_id=str(stream.get("RoomId", "")),
                    stream_id=str(stream.get("StreamId", "")),
                    encode_code=str(stream.get("EncodeCode", "")),
                    config_id=str(stream.get("ConfigId", "")),
                )
            )
    return config


def session_fields(record: SessionRecord) -> Fields:
    """The ``Session`` fields of a ledger row (``turn_stats`` is GetSession's to add)."""
    fields: Fields = {
        "session_id": record.session_id,
        "kind": KIND_TO_PROTO[record.kind],
        "state": STATE_TO_PROTO[record.state],
        "agent_id": record.agent_id,
        "user_id": record.user_id,
        "room_id": record.room_id,
        "agent_user_id": record.agent_user_id,
        "agent_stream_id": record.agent_stream_id,
        "user_stream_id": record.user_stream_id,
        "cdn_url": record.cdn_url or "",
        "agent_instance_id": record.instance_id or "",
        "labels": record.labels,
        "max_duration": {"seconds": record.max_duration_seconds},
        "create_time": _timestamp(record.created_at),
        "start_time": _timestamp(record.started_at),
        "end_time": _timestamp(record.ended_at),
        "update_time": _timestamp(record.updated_at),
        "end_reason": REASON_TO_PROTO[record.end_reason] if record.end_reason else spb.END_REASON_UNSPECIFIED,
        "end_detail": record.end_detail,
        "zego_code": record.zego_code or 0,
        "possible_leak": record.possible_leak,
        "request_id": record.request_id or "",
        "exception_count": record.exception_count,
        "last_exception_code": record.last_exception_code or 0,
        "last_exception_message": record.last_exception_message,
        "owner": record.owner,
    }
    if record.digital_human_config:
        fields["digital_human_config"] = decode_digital_human_config(record.digital_human_config)
    return fields


def session_to_proto(record: SessionRecord) -> spb.Session:
    """The proto view of a ledger row."""
    return spb.Session(**session_fields(record))


def transition_fields(transition: Transition) -> Fields:
    """The ``SessionTransition`` fields of one recorded state change."""
    return {
        "from_state": STATE_TO_PROTO[transition.from_state]
        if transition.from_state
        else spb.SESSION_STATE_UNSPECIFIED,
        "to_state": STATE_TO_PROTO[transition.to_state],
        "time": _timestamp(transition.at),
        "cause": transition.cause,
        "detail": transition.detail,
    }


def turn_stats_fields(stats: TurnStats, budget_seconds: float) -> Fields:
    """The ``TurnStats`` fields of a session's measured turns against ``budget_seconds``."""
    return {
        "turns": stats.turns,
        "abandoned": stats.abandoned,
        "p50_latency_seconds": stats.p50_ms / 1000,
        "p95_latency_seconds": stats.p95_ms / 1000,
        "max_latency_seconds": stats.max_ms / 1000,
        "budget_breaches": stats.budget_breaches,
        "budget_seconds": budget_seconds,
    }
