"""service.api.event_convert: every event type has its payload writer, and each writes its own field."""

from __future__ import annotations

from typing import Any

import pytest

from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from service.api.event_convert import PAYLOADS, event_to_proto
from service.domain.events import Event, EventType


def event(event_type: EventType, data: dict[str, Any]) -> Event:
    return Event(
        event_type=event_type,
        session_id="s-1",
        instance_id="i-1",
        agent_id="a-1",
        room_id="r-1",
        event_time_ms=1_700_000_000_123,
        received_at=1_700_000_000.5,
        sequence=7,
        round=1,
        data=data,
        cursor=42,
    )


def test_every_event_type_has_a_payload_writer() -> None:
    assert set(PAYLOADS) == set(EventType)


@pytest.mark.parametrize("event_type", list(EventType))
def test_each_type_fills_its_own_payload_field_even_from_empty_data(event_type: EventType) -> None:
    msg = event_to_proto(event(event_type, {}))
    assert msg.WhichOneof("payload") == event_type.value
    assert msg.cursor == 42


def test_payload_values() -> None:
    ended = event_to_proto(
        event(
            EventType.ENDED,
            {"reason": "USER_ABSENT", "zego_code": 1202, "latency": {"LLMTTFT": 300, "TotalCost": 900}},
        )
    ).ended
    assert (ended.reason, ended.zego_code, ended.latency.llm_ttft_ms, ended.latency.total_cost_ms) == (
        spb.END_REASON_USER_ABSENT,
        1202,
        300,
        900,
    )
    unknown_reason = event_to_proto(event(EventType.ENDED, {"reason": "BORED"})).ended
    assert unknown_reason.reason == spb.END_REASON_UNSPECIFIED
    interrupted = event_to_proto(event(EventType.INTERRUPTED, {"reason": 9, "played_text": "hi"})).interrupted
    assert (interrupted.reason, interrupted.played_text) == (0, "hi")  # out of the enum's range
    audio = event_to_proto(event(EventType.USER_AUDIO, {"audio_base64": "not base64!"})).user_audio
    assert audio.audio == b""
    breach = event_to_proto(
        event(
            EventType.LATENCY_BUDGET_EXCEEDED,
            {"trigger": "speak", "latency_seconds": 2, "stages": {"llm": 1}},
        )
    ).latency_budget_exceeded
    assert (breach.trigger, breach.latency_seconds, dict(breach.stages)) == ("speak", 2.0, {"llm": 1.0})
    status = event_to_proto(event(EventType.AGENT_STATUS, {"status": "speaking"})).agent_status
    assert status.status == epb.AGENT_STATE_SPEAKING
