"""The metric families of :class:`service.metrics.Metrics`: names, help, labels, buckets, and the
bounded vocabularies every label takes its values from.

Every vocabulary is derived from the enum that owns the values (``SessionKind``, ``EndReason``,
``EventType``, ZEGO's ``Action``...), so a value added to an enum is pre-initialised and accepted
without touching this module, and a value nobody defined is refused. Renaming a family or a label
value breaks dashboards, alert rules and history (``deploy/prometheus``, ``deploy/grafana``): don't.
"""

from __future__ import annotations

import itertools
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.domain.callback_schema import Problem
from service.domain.events import ZEGO_EVENTS, EventType
from service.domain.ingest import IngestResult
from service.domain.model import EndReason, SessionKind, SessionState
from service.domain.outcomes import CreateOutcome, TurnTrigger, ZegoStage
from service.zego.actions import Action

__all__ = [
    "ACTIONS",
    "CALLBACK_EVENTS",
    "CALLBACK_PROBLEMS",
    "CALLBACK_RESULTS",
    "CREATE_OUTCOMES",
    "END_REASONS",
    "EVENT_TYPES",
    "GO_DEFAULT_BUCKETS",
    "INTERACTION_BUCKETS",
    "KINDS",
    "LATENCY_BUCKETS",
    "STAGES",
    "STATES",
    "TRIGGERS",
    "ZEGO_TRANSPORT_OUTCOMES",
    "MetricFamilies",
]

# --- bounded label vocabularies ---------------------------------------------------------------------

KINDS: Final = tuple(k.value for k in SessionKind)
STATES: Final = tuple(s.value for s in SessionState)
#: ``EndReason`` values lowercased (``"user_absent"``), as the dashboards and alerts spell them.
END_REASONS: Final = tuple(r.value.lower() for r in EndReason)
CREATE_OUTCOMES: Final = tuple(o.value for o in CreateOutcome)
ACTIONS: Final = tuple(a.value for a in Action)
#: ZegoClient's outcome for a transport failure (``ZegoTransportError.outcome``); "0" is success.
ZEGO_TRANSPORT_OUTCOMES: Final = ("timeout", "connect_error", "protocol_error", "deadline_exceeded")
#: ZEGO callback ``Event`` names the gateway knows (spec §8.3, incl. the deprecated AgentSpeakAction),
#: then "unknown" for any other.
CALLBACK_EVENTS: Final = (*ZEGO_EVENTS, "unknown")
CALLBACK_RESULTS: Final = tuple(r.value for r in IngestResult)
#: Why a malformed callback was refused (``service.domain.callback_schema.Problem``).
CALLBACK_PROBLEMS: Final = tuple(p.value for p in Problem)
#: ``agentgw.v1.EventType`` names without the prefix, lowercased (a test keeps them in step).
EVENT_TYPES: Final = tuple(t.value for t in EventType)
TRIGGERS: Final = tuple(t.value for t in TurnTrigger)
#: Fields of ZEGO's LatencyData (LLMTTFT, TTSAudioFirstFrameTime, TotalCost).
STAGES: Final = tuple(s.value for s in ZegoStage)

# --- buckets ----------------------------------------------------------------------------------------

#: go-grpc-prometheus uses ``prom.DefBuckets``; client_python's default differs, so spell Go's out.
GO_DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Conventions §4.4: dense below the 1.5 s threshold, an exact 1.5 so ``le="1.5"`` queries work.
LATENCY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
#: Turn latency against ZEGO's 1.5 s interaction budget; fixed, since changing buckets breaks history.
INTERACTION_BUCKETS: Final = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 5.0, 10.0)
_DELIVERY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_CALLBACK_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SESSION_BUCKETS: Final = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)

_RPC: Final = ("grpc_type", "grpc_service", "grpc_method")


class MetricFamilies:
    """Every family of agentgw on one private registry, each bounded label combination created at
    zero (so ``rate()`` sees the first event). :class:`service.metrics.Metrics` adds the recording
    methods; the groups below are the sections of ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._grpc_families()
        self._session_families()
        self._zego_families()
        self._event_families()
        self._interaction_families()
        self.build_info = self._gauge(
            "agentgw_build_info", "Always 1; the running agentgw version.", "version"
        )
        self._fleet_families()
        self._preinitialize()

    def _fleet_families(self) -> None:
        """The fleet runtime's (``service.domain.lease``, ``service.store.pg_feed``)."""
        self.lease_holder = self._gauge(
            "agentgw_lease_held",
            "1 while this replica holds the reaper lease (reconciliation, reaping, leak retries,"
            " retention run there only); across a fleet the sum is 1.",
        )
        self.feed_lag = self._gauge(
            "agentgw_event_feed_lag_seconds",
            "How long before its delivery by this replica's log tailer the newest event was received"
            " (by whichever replica); 0 with the embedded ledger, which publishes as it stores.",
        )

    def _counter(self, name: str, doc: str, *labels: str) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def _gauge(self, name: str, doc: str, *labels: str) -> Gauge:
        return Gauge(name, doc, labels, registry=self.registry)

    def _histogram(self, name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

    def _grpc_families(self) -> None:
        """gRPC server, exactly as go-grpc-prometheus (server_metrics.go): names, help, labels, buckets."""
        self.grpc_started = self._counter(
            "grpc_server_started_total", "Total number of RPCs started on the server.", *_RPC
        )
        self.grpc_handled = self._counter(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            *_RPC,
            "grpc_code",
        )
        self.grpc_msg_received = self._counter(
            "grpc_server_msg_received_total",
            "Total number of RPC stream messages received on the server.",
            *_RPC,
        )
        self.grpc_msg_sent = self._counter(
            "grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", *_RPC
        )
        self.grpc_handling_seconds = self._histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the "
            "server. Unary RPCs only: a stream's duration is its lifetime.",
            GO_DEFAULT_BUCKETS,
            *_RPC,
        )

    def _session_families(self) -> None:
        """Sessions and capacity."""
        self.sessions = self._gauge("agentgw_sessions", "Sessions in the ledger.", "kind", "state")
        self.session_limit = self._gauge(
            "agentgw_session_limit",
            "Instance cap of the kind's pool (live digital humans share the digital_human pool).",
            "kind",
        )
        self.sessions_created = self._counter(
            "agentgw_sessions_created_total", "CreateSession outcomes, by kind.", "kind", "outcome"
        )
        self.sessions_ended = self._counter(
            "agentgw_sessions_ended_total", "Sessions that reached ENDED or FAILED.", "kind", "reason"
        )
        self.session_duration = self._histogram(
            "agentgw_session_duration_seconds", "Lifetime of ended sessions.", _SESSION_BUCKETS, "kind"
        )
        self.admission_rejections = self._counter(
            "agentgw_admission_rejections_total", "Requests refused because the pool was full.", "kind"
        )
        self.possible_leaks = self._counter(
            "agentgw_possible_leaks_total",
            "Sessions closed without confirming their ZEGO instance is gone (it may still bill).",
            "kind",
        )
        self.suspect_sessions = self._gauge(
            "agentgw_suspect_sessions",
            "Ended sessions whose ZEGO instance may still run; each keeps a capacity slot until ZEGO "
            "confirms it gone.",
            "kind",
        )
        self.leaked_sessions = self._gauge(
            "agentgw_leaked_sessions",
            "Suspect sessions past the leak give-up time: never confirmed gone, no longer retried.",
            "kind",
        )

    def _zego_families(self) -> None:
        """ZEGO API client (fed by ``ZegoMetricsObserver``)."""
        self.zego_requests = self._counter(
            "agentgw_zego_requests_total",
            'ZEGO API attempts by ZEGO Code ("0" = success) or transport failure class.',
            "action",
            "code",
        )
        self.zego_request_duration = self._histogram(
            "agentgw_zego_request_duration_seconds", "One ZEGO API attempt.", LATENCY_BUCKETS, "action"
        )
        self.zego_rate_limit_waits = self._counter(
            "agentgw_zego_rate_limit_waits_total", "Attempts delayed by the local rate limiter.", "action"
        )
        self.zego_rate_limit_wait_seconds = self._counter(
            "agentgw_zego_rate_limit_wait_seconds_total", "Time spent in the local rate limiter.", "action"
        )
        self.zego_retries = self._counter(
            "agentgw_zego_retries_total", "Retries of read-only actions after transport failures.", "action"
        )

    def _event_families(self) -> None:
        """Callbacks and event fan-out."""
        self.callbacks_received = self._counter(
            "agentgw_callbacks_received_total", "ZEGO callbacks received.", "event", "result"
        )
        self.callbacks_invalid = self._counter(
            "agentgw_callbacks_invalid_total",
            "Signed callbacks refused (400) because a value is not what spec §8/§10 allows.",
            "event",
            "reason",
        )
        self.events_unreadable = self._counter(
            "agentgw_events_unreadable_total",
            "Stored events that could not be converted and were delivered marked unreadable.",
            "type",
        )
        self.callback_handling = self._histogram(
            "agentgw_callback_handling_seconds", "Callback arrival to our HTTP answer.", _CALLBACK_BUCKETS
        )
        self.event_delivery = self._histogram(
            "agentgw_event_delivery_seconds",
            "Callback arrival to a live event being written to a subscriber's stream (not replays).",
            _DELIVERY_BUCKETS,
        )
        self.event_subscribers = self._gauge("agentgw_event_subscribers", "Open WatchEvents subscriptions.")
        self.subscriber_overflows = self._counter(
            "agentgw_subscriber_overflows_total", "Subscribers dropped for falling behind the live stream."
        )
        self.events_appended = self._counter(
            "agentgw_events_appended_total", "Session events appended to the event log.", "type"
        )

    def _interaction_families(self) -> None:
        """Interaction latency against ZEGO's 1.5 s budget."""
        self.interaction_latency = self._histogram(
            "agentgw_interaction_latency_seconds",
            "Turn latency: end of user speech, SendText or Speak to the agent starting to speak.",
            INTERACTION_BUCKETS,
            "kind",
            "trigger",
        )
        self.interaction_budget_exceeded = self._counter(
            "agentgw_interaction_budget_exceeded_total", "Turns slower than the budget.", "kind", "trigger"
        )
        self.interaction_turns_abandoned = self._counter(
            "agentgw_interaction_turns_abandoned_total",
            "Turns that got no agent response (the SLO counts them as over budget).",
            "kind",
            "trigger",
        )
        self.interaction_budget = self._gauge(
            "agentgw_interaction_budget_seconds", "The turn-latency budget."
        )
        self.zego_stage_latency = self._histogram(
            "agentgw_zego_stage_latency_seconds",
            "ZEGO's per-session LatencyData averages, reported at instance deletion.",
            LATENCY_BUCKETS,
            "stage",
        )

    def _preinitialize(self) -> None:
        """Create every bounded label combination at zero (``.labels()`` alone creates the child)."""
        for kind in KINDS:
            self._preinitialize_kind(kind)
        for action in ACTIONS:
            self.zego_request_duration.labels(action)
            self.zego_rate_limit_waits.labels(action)
            self.zego_rate_limit_wait_seconds.labels(action)
            self.zego_retries.labels(action)
            for code in ("0", *ZEGO_TRANSPORT_OUTCOMES):
                self.zego_requests.labels(action, code)
        for event, result in itertools.product(CALLBACK_EVENTS, CALLBACK_RESULTS):
            self.callbacks_received.labels(event, result)
        for event, problem in itertools.product(CALLBACK_EVENTS, CALLBACK_PROBLEMS):
            self.callbacks_invalid.labels(event, problem)
        for event_type in EVENT_TYPES:
            self.events_appended.labels(event_type)
        for event_type in (*EVENT_TYPES, "unknown"):
            self.events_unreadable.labels(event_type)
        for stage in STAGES:
            self.zego_stage_latency.labels(stage)

    def _preinitialize_kind(self, kind: str) -> None:
        for family in (
            self.session_limit,
            self.session_duration,
            self.admission_rejections,
            self.possible_leaks,
            self.suspect_sessions,
            self.leaked_sessions,
        ):
            family.labels(kind)
        for state in STATES:
            self.sessions.labels(kind, state)
        for outcome in CREATE_OUTCOMES:
            self.sessions_created.labels(kind, outcome)
        for reason in END_REASONS:
            self.sessions_ended.labels(kind, reason)
        for trigger in TRIGGERS:
            self.interaction_latency.labels(kind, trigger)
            self.interaction_budget_exceeded.labels(kind, trigger)
            self.interaction_turns_abandoned.labels(kind, trigger)
