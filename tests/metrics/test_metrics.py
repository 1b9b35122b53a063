"""service.metrics: label hygiene, pre-initialisation, ledger gauges, buckets, the ZEGO observer."""

from __future__ import annotations

import importlib
import pathlib
import re
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from service.api.metrics_interceptor import GRPC_CODES, preinitialize
from service.domain.model import EndReason, NewSession, SessionKind, SessionState
from service.metrics import (
    CALLBACK_EVENTS,
    CALLBACK_PROBLEMS,
    CALLBACK_RESULTS,
    CREATE_OUTCOMES,
    END_REASONS,
    EVENT_TYPES,
    GO_DEFAULT_BUCKETS,
    INTERACTION_BUCKETS,
    KINDS,
    STAGES,
    STATES,
    TRIGGERS,
    Metrics,
    ZegoMetricsObserver,
)
from service.store.sqlite import SqliteLedger
from service.zego.actions import Action, ClientObserver
from tests.backends import LedgerFactory

T0 = 1_700_000_000.0

#: Every label name the registry may use (conventions §4.8): bounded enums only.
ALLOWED_LABELS = frozenset(
    {
        "grpc_type",
        "grpc_service",
        "grpc_method",
        "grpc_code",
        "kind",
        "state",
        "outcome",
        "reason",
        "action",
        "code",
        "event",
        "result",
        "type",
        "trigger",
        "stage",
        "version",
        "le",
    }
)
FORBIDDEN = re.compile(r"(session|agent|room|user|request|instance|stream|tenant|url|peer)", re.I)


def label_names(registry: CollectorRegistry) -> set[str]:
    return {name for family in registry.collect() for s in family.samples for name in s.labels}


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics(version="1.2.3")
    preinitialize(m, [])
    return m


def exercise(m: Metrics) -> None:
    """Touch every recording method once, so labels created lazily are checked too."""
    m.session_created("voice", "created")
    m.session_ended("digital_human", EndReason.USER_ABSENT, 42.0)
    m.admission_rejected("voice")
    m.possible_leak("live_digital_human")
    m.zego_request(Action.CREATE_AGENT_INSTANCE, "410001002", 0.2)
    m.zego_stage("total", 1.7)
    m.callback("NotAnEvent", "malformed", 0.003)
    m.callback("Exception", "malformed", 0.003, "out_of_range")
    m.event_unreadable("no_such_type")
    m.event_appended("asr_result")
    m.event_delivered(0.002)
    m.subscriber_added()
    m.subscriber_overflow()
    m.interaction("voice", "user_speech", 1.6, budget_exceeded=True)
    m.turn_abandoned("voice", "speak")


def test_every_label_name_is_in_the_allow_list(metrics: Metrics) -> None:
    exercise(metrics)
    names = label_names(metrics.registry)
    assert names <= ALLOWED_LABELS, names - ALLOWED_LABELS
    assert not {n for n in names if FORBIDDEN.search(n)}


def test_bounded_sets_are_preinitialised_at_zero(metrics: Metrics) -> None:
    for kind in KINDS:
        for state in STATES:
            assert value(metrics, "agentgw_sessions", kind=kind, state=state) == 0
        for outcome in CREATE_OUTCOMES:
            assert value(metrics, "agentgw_sessions_created_total", kind=kind, outcome=outcome) == 0
        for reason in END_REASONS:
            assert value(metrics, "agentgw_sessions_ended_total", kind=kind, reason=reason) == 0
        for trigger in TRIGGERS:
            labels = {"kind": kind, "trigger": trigger}
            assert value(metrics, "agentgw_interaction_latency_seconds_count", **labels) == 0
            assert value(metrics, "agentgw_interaction_budget_exceeded_total", **labels) == 0
            assert value(metrics, "agentgw_interaction_turns_abandoned_total", **labels) == 0
        assert value(metrics, "agentgw_session_limit", kind=kind) == 0
        assert value(metrics, "agentgw_admission_rejections_total", kind=kind) == 0
        assert value(metrics, "agentgw_possible_leaks_total", kind=kind) == 0
    for action in Action:
        for code in ("0", "timeout", "connect_error", "protocol_error", "deadline_exceeded"):
            assert value(metrics, "agentgw_zego_requests_total", action=action.value, code=code) == 0
        assert value(metrics, "agentgw_zego_retries_total", action=action.value) == 0
        assert value(metrics, "agentgw_zego_rate_limit_waits_total", action=action.value) == 0
    for event in CALLBACK_EVENTS:
        for result in CALLBACK_RESULTS:
            assert value(metrics, "agentgw_callbacks_received_total", event=event, result=result) == 0
            if result == "malformed":
                for reason in CALLBACK_PROBLEMS:
                    labels = {"event": event, "reason": reason}
                    assert value(metrics, "agentgw_callbacks_invalid_total", **labels) == 0
    for event_type in EVENT_TYPES:
        assert value(metrics, "agentgw_events_appended_total", type=event_type) == 0
        assert value(metrics, "agentgw_events_unreadable_total", type=event_type) == 0
    assert value(metrics, "agentgw_events_unreadable_total", type="unknown") == 0
    for stage in STAGES:
        assert value(metrics, "agentgw_zego_stage_latency_seconds_count", stage=stage) == 0
    assert value(metrics, "agentgw_event_subscribers") == 0
    assert value(metrics, "agentgw_subscriber_overflows_total") == 0
    assert value(metrics, "agentgw_interaction_budget_seconds") == 1.5
    assert value(metrics, "agentgw_build_info", version="1.2.3") == 1


def test_health_service_is_preinitialised_with_every_code(metrics: Metrics) -> None:
    check = {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}
    for code in GRPC_CODES.values():
        assert value(metrics, "grpc_server_handled_total", grpc_type="unary", grpc_code=code, **check) == 0
    assert value(metrics, "grpc_server_handling_seconds_count", grpc_type="unary", **check) == 0
    watch = {"grpc_type": "server_stream", "grpc_service": "grpc.health.v1.Health", "grpc_method": "Watch"}
    assert value(metrics, "grpc_server_started_total", **watch) == 0
    assert value(metrics, "grpc_server_msg_sent_total", **watch) == 0
    # Streams have no latency histogram: their duration is their lifetime.
    assert value(metrics, "grpc_server_handling_seconds_count", **watch) is None
    assert len(GRPC_CODES) == 17


def test_our_services_preinitialise_from_their_descriptors() -> None:
    from agentgw_client.gen.agentgw.v1 import session_service_pb2

    m = Metrics()
    preinitialize(m, [session_service_pb2.DESCRIPTOR.services_by_name["SessionService"]])
    labels = {"grpc_type": "unary", "grpc_service": "agentgw.v1.SessionService", "grpc_method": "SendText"}
    assert value(m, "grpc_server_handled_total", grpc_code="ResourceExhausted", **labels) == 0


def test_buckets() -> None:
    assert INTERACTION_BUCKETS == (0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 5, 10)
    assert GO_DEFAULT_BUCKETS == (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
    text = generate_latest(Metrics().registry).decode()
    for family in (
        "agentgw_interaction_latency_seconds",
        "agentgw_zego_stage_latency_seconds",
        "agentgw_zego_request_duration_seconds",
    ):
        assert re.search(rf'^{family}_bucket{{[^}}]*le="1\.5"[^}}]*}} 0\.0$', text, re.M), family
    assert 'agentgw_session_duration_seconds_bucket{kind="voice",le="10.0"}' in text
    assert 'agentgw_session_duration_seconds_bucket{kind="voice",le="14400.0"}' in text
    assert 'agentgw_event_delivery_seconds_bucket{le="0.0005"}' in text
    assert 'agentgw_event_delivery_seconds_bucket{le="1.0"}' in text


def test_interaction_counts_against_the_budget(metrics: Metrics) -> None:
    metrics.interaction("voice", "user_speech", 1.5, budget_exceeded=False)
    metrics.interaction("voice", "user_speech", 1.51, budget_exceeded=True)
    labels = {"kind": "voice", "trigger": "user_speech"}
    assert value(metrics, "agentgw_interaction_latency_seconds_bucket", le="1.5", **labels) == 1
    assert value(metrics, "agentgw_interaction_latency_seconds_count", **labels) == 2
    assert value(metrics, "agentgw_interaction_budget_exceeded_total", **labels) == 1
    assert (
        Metrics(interaction_budget_seconds=2.0).registry.get_sample_value(
            "agentgw_interaction_budget_seconds"
        )
        == 2.0
    )


def test_recording_methods(metrics: Metrics) -> None:
    exercise(metrics)
    assert value(metrics, "agentgw_sessions_ended_total", kind="digital_human", reason="user_absent") == 1
    assert value(metrics, "agentgw_session_duration_seconds_sum", kind="digital_human") == 42.0
    assert value(metrics, "agentgw_callbacks_received_total", event="unknown", result="malformed") == 1
    assert value(metrics, "agentgw_possible_leaks_total", kind="live_digital_human") == 1
    assert value(metrics, "agentgw_event_subscribers") == 1
    metrics.subscriber_removed()
    assert value(metrics, "agentgw_event_subscribers") == 0
    # The reaper reports with enums and no duration (service.domain.reaper.ReaperObserver).
    metrics.session_ended(SessionKind.VOICE, EndReason.MAX_DURATION)
    assert value(metrics, "agentgw_sessions_ended_total", kind="voice", reason="max_duration") == 1
    assert value(metrics, "agentgw_session_duration_seconds_count", kind="voice") == 0
    with pytest.raises(ValueError, match="reason"):
        metrics.session_ended("voice", "BORED")
    with pytest.raises(ValueError, match="kind"):
        metrics.session_created("video", "created")
    with pytest.raises(ValueError, match="outcome"):
        metrics.session_created("voice", "exploded")
    with pytest.raises(ValueError, match="trigger"):
        metrics.interaction("voice", "telepathy", 1.0, budget_exceeded=False)


def test_zego_observer_maps_outcomes(metrics: Metrics) -> None:
    observer: ClientObserver = ZegoMetricsObserver(metrics)
    observer.request_finished(Action.SEND_AGENT_INSTANCE_LLM, "0", 0.3)
    observer.request_finished(Action.SEND_AGENT_INSTANCE_LLM, "timeout", 10.0)
    observer.request_finished(Action.SEND_AGENT_INSTANCE_LLM, "410001029", 0.1)
    observer.rate_limit_waited(Action.QUERY_AGENTS, 0.25)
    observer.rate_limit_waited(Action.QUERY_AGENTS, 0.5)
    observer.retried(Action.QUERY_AGENTS)
    llm = Action.SEND_AGENT_INSTANCE_LLM.value
    assert value(metrics, "agentgw_zego_requests_total", action=llm, code="0") == 1
    assert value(metrics, "agentgw_zego_requests_total", action=llm, code="timeout") == 1
    assert value(metrics, "agentgw_zego_requests_total", action=llm, code="410001029") == 1
    assert value(metrics, "agentgw_zego_request_duration_seconds_count", action=llm) == 3
    assert value(metrics, "agentgw_zego_request_duration_seconds_bucket", action=llm, le="1.5") == 2
    assert value(metrics, "agentgw_zego_rate_limit_waits_total", action="QueryAgents") == 2
    assert value(metrics, "agentgw_zego_rate_limit_wait_seconds_total", action="QueryAgents") == 0.75
    assert value(metrics, "agentgw_zego_retries_total", action="QueryAgents") == 1


def test_zego_codes_cannot_grow_without_bound(metrics: Metrics) -> None:
    observer = ZegoMetricsObserver(metrics)
    for code in range(1000):
        observer.request_finished(Action.LIST_AGENTS, str(410000000 + code), 0.01)
    observer.request_finished(Action.LIST_AGENTS, "not a code", 0.01)
    observer.request_finished("NoSuchAction", "0", 0.01)
    codes = {
        s.labels["code"]
        for f in metrics.registry.collect()
        if f.name == "agentgw_zego_requests"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert len(codes) <= 64 + 1
    assert value(metrics, "agentgw_zego_requests_total", action="ListAgents", code="other") == 1000 - 59 + 1
    assert value(metrics, "agentgw_zego_requests_total", action="other", code="0") == 1


def test_event_types_match_the_proto_enum() -> None:
    try:
        pb = importlib.import_module("agentgw_client.gen.agentgw.v1.session_event_pb2")
    except ImportError:
        pytest.skip("session_event_pb2 is not generated in this tree")
    names = [
        n.removeprefix("EVENT_TYPE_").lower() for n in pb.EventType.keys() if not n.endswith("UNSPECIFIED")
    ]
    assert tuple(names) == EVENT_TYPES


def test_end_reasons_and_kinds_follow_the_domain() -> None:
    assert END_REASONS == tuple(r.value.lower() for r in EndReason)
    assert KINDS == ("voice", "digital_human", "live_digital_human")


def _new(n: int, kind: SessionKind) -> NewSession:
    return NewSession(
        session_id=f"s-{n}",
        kind=kind,
        agent_id="agent-a",
        user_id=f"user-{n}",
        room_id="room-1",
        agent_user_id=f"agent-user-{n}",
        agent_stream_id=f"agent-stream-{n}",
        user_stream_id=f"user-stream-{n}",
        labels={},
        max_duration_seconds=600,
        request_id=None,
        request_hash=None,
        created_at=T0 + n,
    )


@pytest.fixture
async def ledger(tmp_path: pathlib.Path, make_ledger: LedgerFactory) -> AsyncIterator[SqliteLedger]:
    store = make_ledger(tmp_path / "ledger.db", clock=lambda: T0)
    await store.open()
    yield store
    await store.close()


async def test_refresh_from_ledger_sets_every_kind_and_state(metrics: Metrics, ledger: SqliteLedger) -> None:
    for n, kind in enumerate([SessionKind.VOICE, SessionKind.VOICE, SessionKind.LIVE_DIGITAL_HUMAN]):
        outcome = await ledger.reserve_session(_new(n, kind), limit=10)
        assert outcome.created
    await ledger.transition(
        "s-0", SessionState.STARTING, expected=frozenset({SessionState.PENDING}), at=T0, cause="test"
    )
    await ledger.transition(
        "s-0", SessionState.ACTIVE, expected=frozenset({SessionState.STARTING}), at=T0, cause="test"
    )
    # A stale value must be overwritten with zero, as after a restart.
    metrics.sessions.labels("digital_human", "ACTIVE").set(7)

    await metrics.refresh_from_ledger(ledger, {"voice": 10, "digital_human": 3})

    assert value(metrics, "agentgw_sessions", kind="voice", state="ACTIVE") == 1
    assert value(metrics, "agentgw_sessions", kind="voice", state="PENDING") == 1
    assert value(metrics, "agentgw_sessions", kind="live_digital_human", state="PENDING") == 1
    assert value(metrics, "agentgw_sessions", kind="digital_human", state="ACTIVE") == 0
    total = sum(value(metrics, "agentgw_sessions", kind=k, state=s) or 0 for k in KINDS for s in STATES)
    assert total == 3
    assert value(metrics, "agentgw_session_limit", kind="voice") == 10
    assert value(metrics, "agentgw_session_limit", kind="digital_human") == 3
    assert value(metrics, "agentgw_session_limit", kind="live_digital_human") == 3  # the shared pool
