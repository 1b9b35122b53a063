"""Ledger rows -> protobuf: every field, times split into seconds and nanos, unset times left unset.

The times are exact in binary (a float epoch has ~256 ns steps today), so the nanos are exact too.
"""

from __future__ import annotations

import base64
import json

from google.protobuf import duration_pb2, timestamp_pb2

from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from service.api.session_convert import session_fields, session_to_proto, transition_fields, turn_stats_fields
from service.domain.model import EndReason, SessionKind, SessionRecord, SessionState, Transition, TurnStats


def _ts(seconds: int, nanos: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def _record(**overrides: object) -> SessionRecord:
    values: dict[str, object] = {
        "session_id": "s1",
        "kind": SessionKind.DIGITAL_HUMAN,
        "state": SessionState.ENDED,
        "agent_id": "a1",
        "user_id": "u1",
        "room_id": "r1",
        "agent_user_id": "au1",
        "agent_stream_id": "as1",
        "user_stream_id": "us1",
        "labels": {"team": "care"},
        "max_duration_seconds": 0,
        "request_id": "req-1",
        "request_hash": "h",
        "created_at": 1000.25,
        "updated_at": 1009.5,
        "cdn_url": "rtmp://cdn",
        "instance_id": "1843985617336143872",
        "digital_human_config": base64.b64encode(json.dumps({"DigitalHumanId": "dh1"}).encode()).decode(),
        "started_at": 1001.5,
        "ended_at": 1009.5,
        "end_reason": EndReason.ENDED_BY_CALLER,
        "end_detail": "bye",
        "zego_code": 410001008,
        "possible_leak": True,
        "exception_count": 2,
        "last_exception_code": 1201,
        "last_exception_message": "asr failed",
    }
    values.update(overrides)
    return SessionRecord(**values)  # type: ignore[arg-type]


def test_every_field_of_a_session() -> None:
    assert session_to_proto(_record()) == spb.Session(
        session_id="s1",
        kind=spb.SESSION_KIND_DIGITAL_HUMAN,
        state=spb.SESSION_STATE_ENDED,
        agent_id="a1",
        user_id="u1",
        room_id="r1",
        agent_user_id="au1",
        agent_stream_id="as1",
        user_stream_id="us1",
        cdn_url="rtmp://cdn",
        agent_instance_id="1843985617336143872",
        labels={"team": "care"},
        max_duration=duration_pb2.Duration(seconds=0),
        create_time=_ts(1000, 250_000_000),
        start_time=_ts(1001, 500_000_000),
        end_time=_ts(1009, 500_000_000),
        update_time=_ts(1009, 500_000_000),
        end_reason=spb.END_REASON_ENDED_BY_CALLER,
        end_detail="bye",
        zego_code=410001008,
        possible_leak=True,
        request_id="req-1",
        exception_count=2,
        last_exception_code=1201,
        last_exception_message="asr failed",
        digital_human_config=spb.DigitalHumanConfig(
            raw=_record().digital_human_config or "", digital_human_id="dh1"
        ),
    )


def test_unset_optionals_stay_unset_and_a_zero_duration_is_present() -> None:
    msg = session_to_proto(
        _record(
            state=SessionState.ACTIVE,
            started_at=None,
            ended_at=None,
            end_reason=None,
            cdn_url=None,
            instance_id=None,
            digital_human_config=None,
            zego_code=None,
            request_id=None,
            last_exception_code=None,
        )
    )
    assert not msg.HasField("start_time") and not msg.HasField("end_time")
    assert not msg.HasField("digital_human_config")
    assert msg.HasField("max_duration") and msg.max_duration.seconds == 0
    assert msg.end_reason == spb.END_REASON_UNSPECIFIED
    assert (msg.cdn_url, msg.agent_instance_id, msg.request_id, msg.zego_code) == ("", "", "", 0)


def test_the_get_session_response_from_fields() -> None:
    first = Transition("s1", None, SessionState.PENDING, 1000.0, "create")
    second = Transition("s1", SessionState.PENDING, SessionState.STARTING, 1000.75, "zego_created", "x")
    session = session_fields(_record())
    session["turn_stats"] = turn_stats_fields(
        TurnStats(turns=3, p50_ms=800, max_ms=1600, budget_breaches=1), 1.5
    )
    response = api.GetSessionResponse(
        session=session, transitions=[transition_fields(first), transition_fields(second)]
    )
    assert response.session.session_id == "s1"
    assert response.session.turn_stats == spb.TurnStats(
        turns=3, p50_latency_seconds=0.8, max_latency_seconds=1.6, budget_breaches=1, budget_seconds=1.5
    )
    assert list(response.transitions) == [
        spb.SessionTransition(
            to_state=spb.SESSION_STATE_PENDING,
            time=_ts(1000, 0),
            cause="create",
        ),
        spb.SessionTransition(
            from_state=spb.SESSION_STATE_PENDING,
            to_state=spb.SESSION_STATE_STARTING,
            time=_ts(1000, 750_000_000),
            cause="zego_created",
            detail="x",
        ),
    ]
