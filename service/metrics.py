"""agentgw's Prometheus metrics: every family, its labels and buckets, in one place (conventions §4).

A :class:`Metrics` owns one ``CollectorRegistry``: the gateway creates one, tests their own. Every label
takes values from a bounded set (the constants below) and every combination exists at zero from the
start, so ``rate()`` sees the first event. No label carries a session, agent, room, user or request id
(conventions §4.8). Methods raise ``ValueError`` for a value outside our own enums (a bug) and fold
values from outside (ZEGO codes, callback event names) into ``"other"`` / ``"unknown"``.

Example::

    metrics = Metrics(version="0.1.0")
    metrics.session_created("voice", "created")
    metrics.interaction("voice", "user_speech", 1.2, budget_exceeded=False)
    zego = ZegoClient(..., observer=ZegoMetricsObserver(metrics))
    await metrics.refresh_from_ledger(ledger, {"voice": 10, "digital_human": 2})
    body = prometheus_client.generate_latest(metrics.registry)

The handler wrapper of ``service.api.interceptors`` feeds the ``grpc_server_*`` families
(go-grpc-prometheus style) through ``service.api.metrics_interceptor``. Like go-grpc-prometheus,
nothing exports ``*_created`` series.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from importlib import metadata
from typing import Final, Protocol

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.domain.callback_schema import Problem
from service.domain.model import EndReason, SessionKind, SessionState
from service.zego.actions import Action

# No ``*_created`` series (a third of /metrics, one per counter, histogram and summary child):
# go-grpc-prometheus and the Go client do not export them, and nothing of ours reads them. The switch
# is prometheus_client's own and process-wide (its env twin: PROMETHEUS_DISABLE_CREATED_SERIES).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

__all__ = [
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
    "Metrics",
    "SessionCounts",
    "ZegoMetricsObserver",
]

# --- bounded label vocabularies ---------------------------------------------------------------------

KINDS: Final = tuple(k.value for k in SessionKind)
STATES: Final = tuple(s.value for s in SessionState)
END_REASONS: Final = tuple(r.value.lower() for r in EndReason)
CREATE_OUTCOMES: Final = tuple(
    "created replayed rejected_capacity rejected_quota failed_upstream failed_unconfirmed invalid".split()
)
ACTIONS: Final = tuple(a.value for a in Action)
#: ZegoClient's outcome for a transport failure (``ZegoTransportError.outcome``); "0" is success.
ZEGO_TRANSPORT_OUTCOMES: Final = ("timeout", "connect_error", "protocol_error", "deadline_exceeded")
#: ZEGO callback ``Event`` names (spec §8.3, incl. the deprecated AgentSpeakAction); others -> "unknown".
CALLBACK_EVENTS: Final = tuple(
    "AgentInstanceCreated AgentInstanceDeleted AgentInstanceStatus AgentInstanceMetaInfo AgentSpeakAction"
    " ASRResult LLMResult Exception Interrupted UserSpeakAction UserAudioData unknown".split()
)
CALLBACK_RESULTS: Final = ("accepted", "duplicate", "bad_signature", "stale", "replayed", "malformed")
#: Why a malformed callback was refused (``service.domain.callback_schema.Problem``).
CALLBACK_PROBLEMS: Final = tuple(p.value for p in Problem)
#: ``agentgw.v1.EventType`` names without the prefix, lowercased (a test keeps them in step).
EVENT_TYPES: Final = tuple(
    "created ended user_speech asr_result llm_result agent_status interrupted exception meta_info"
    " user_audio latency_budget_exceeded".split()
)
TRIGGERS: Final = ("user_speech", "send_text", "speak")
#: Fields of ZEGO's LatencyData (LLMTTFT, TTSAudioFirstFrameTime, TotalCost).
STAGES: Final = ("llm_ttft", "tts_first_frame", "total")

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

#: Distinct ZEGO codes kept as label values; then "other", so no upstream can grow our series unbounded.
_MAX_ZEGO_CODES: Final = 64


class SessionCounts(Protocol):
    """The part of ``service.store.base.Ledger`` the gauges need."""

    async def count_by_kind_state(self) -> Mapping[tuple[SessionKind, SessionState], int]:
        """Sessions per (kind, state); missing combinations count zero."""


def _check(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {allowed}")
    return value


def _kind(kind: str) -> str:
    return _check(kind, KINDS, "kind")


def _package_version() -> str:
    try:
        return metadata.version("agentgw")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """All of agentgw's metric families on one private registry, with typed recording methods.

    Args:
        version: reported by ``agentgw_build_info``; defaults to the installed package's version.
        interaction_budget_seconds: the turn-latency budget exported as a gauge (ZEGO advertises 1.5 s).
    """

    def __init__(self, *, version: str | None = None, interaction_budget_seconds: float = 1.5) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=r)

        # gRPC server, exactly as go-grpc-prometheus (server_metrics.go): names, help, labels, buckets.
        rpc = ("grpc_type", "grpc_service", "grpc_method")
        self.grpc_started = counter(
            "grpc_server_started_total", "Total number of RPCs started on the server.", *rpc
        )
        self.grpc_handled = counter(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            *rpc,
            "grpc_code",
        )
        self.grpc_msg_received = counter(
            "grpc_server_msg_received_total",
            "Total number of RPC stream messages received on the server.",
            *rpc,
        )
        self.grpc_msg_sent = counter(
            "grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", *rpc
        )
        self.grpc_handling_seconds = histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the "
            "server. Unary RPCs only: a stream's duration is its lifetime.",
            GO_DEFAULT_BUCKETS,
            *rpc,
        )

        # Sessions and capacity.
        self.sessions = gauge("agentgw_sessions", "Sessions in the ledger.", "kind", "state")
        self.session_limit = gauge(
            "agentgw_session_limit",
            "Instance cap of the kind's pool (live digital humans share the digital_human pool).",
            "kind",
        )
        self.sessions_created = counter(
            "agentgw_sessions_created_total", "CreateSession outcomes, by kind.", "kind", "outcome"
        )
        self.sessions_ended = counter(
            "agentgw_sessions_ended_total", "Sessions that reached ENDED or FAILED.", "kind", "reason"
        )
        self.session_duration = histogram(
            "agentgw_session_duration_seconds", "Lifetime of ended sessions.", _SESSION_BUCKETS, "kind"
        )
        self.admission_rejections = counter(
            "agentgw_admission_rejections_total", "Requests refused because the pool was full.", "kind"
        )
        self.possible_leaks = counter(
            "agentgw_possible_leaks_total",
            "Sessions closed without confirming their ZEGO instance is gone (it may still bill).",
            "kind",
        )
        self.suspect_sessions = gauge(
            "agentgw_suspect_sessions",
            "Ended sessions whose ZEGO instance may still run; each keeps a capacity slot until ZEGO "
            "confirms it gone.",
            "kind",
        )
        self.leaked_sessions = gauge(
            "agentgw_leaked_sessions",
            "Suspect sessions past the leak give-up time: never confirmed gone, no longer retried.",
            "kind",
        )

        # ZEGO API client (fed by ZegoMetricsObserver).
        self.zego_requests = counter(
            "agentgw_zego_requests_total",
            'ZEGO API attempts by ZEGO Code ("0" = success) or transport failure class.',
            "action",
            "code",
        )
        self.zego_request_duration = histogram(
            "agentgw_zego_request_duration_seconds", "One ZEGO API attempt.", LATENCY_BUCKETS, "action"
        )
        self.zego_rate_limit_waits = counter(
            "agentgw_zego_rate_limit_waits_total", "Attempts delayed by the local rate limiter.", "action"
        )
        self.zego_rate_limit_wait_seconds = counter(
            "agentgw_zego_rate_limit_wait_seconds_total", "Time spent in the local rate limiter.", "action"
        )
        self.zego_retries = counter(
            "agentgw_zego_retries_total", "Retries of read-only actions after transport failures.", "action"
        )

        # Callbacks and event fan-out.
        self.callbacks_received = counter(
            "agentgw_callbacks_received_total", "ZEGO callbacks received.", "event", "result"
        )
        self.callbacks_invalid = counter(
            "agentgw_callbacks_invalid_total",
            "Signed callbacks refused (400) because a value is not what spec §8/§10 allows.",
            "event",
            "reason",
        )
        self.events_unreadable = counter(
            "agentgw_events_unreadable_total",
            "Stored events that could not be converted and were delivered marked unreadable.",
            "type",
        )
        self.callback_handling = histogram(
            "agentgw_callback_handling_seconds", "Callback arrival to our HTTP answer.", _CALLBACK_BUCKETS
        )
        self.event_delivery = histogram(
            "agentgw_event_delivery_seconds",
            "Callback arrival to a live event being written to a subscriber's stream (not replays).",
            _DELIVERY_BUCKETS,
        )
        self.event_subscribers = gauge("agentgw_event_subscribers", "Open WatchEvents subscriptions.")
        self.subscriber_overflows = counter(
            "agentgw_subscriber_overflows_total", "Subscribers dropped for falling behind the live stream."
        )
        self.events_appended = counter(
            "agentgw_events_appended_total", "Session events appended to the event log.", "type"
        )

        # Interaction latency against ZEGO's 1.5 s budget.
        self.interaction_latency = histogram(
            "agentgw_interaction_latency_seconds",
            "Turn latency: end of user speech, SendText or Speak to the agent starting to speak.",
            INTERACTION_BUCKETS,
            "kind",
            "trigger",
        )
        self.interaction_budget_exceeded = counter(
            "agentgw_interaction_budget_exceeded_total", "Turns slower than the budget.", "kind", "trigger"
        )
        self.interaction_turns_abandoned = counter(
            "agentgw_interaction_turns_abandoned_total",
            "Turns that got no agent response (the SLO counts them as over budget).",
            "kind",
            "trigger",
        )
        self.interaction_budget = gauge("agentgw_interaction_budget_seconds", "The turn-latency budget.")
        self.zego_stage_latency = histogram(
            "agentgw_zego_stage_latency_seconds",
            "ZEGO's per-session LatencyData averages, reported at instance deletion.",
            LATENCY_BUCKETS,
            "stage",
        )
        self.build_info = gauge("agentgw_build_info", "Always 1; the running agentgw version.", "version")

        self.build_info.labels(version or _package_version()).set(1)
        self.interaction_budget.set(interaction_budget_seconds)
        self._zego_codes: set[str] = {"0", *ZEGO_TRANSPORT_OUTCOMES}
        self._preinitialize()
        self._add_fleet_families()

    def _preinitialize(self) -> None:
        """Create every bounded label combination at zero (``.labels()`` alone creates the child)."""
        for kind in KINDS:
            self.session_limit.labels(kind)
            self.session_duration.labels(kind)
            self.admission_rejections.labels(kind)
            self.possible_leaks.labels(kind)
            self.suspect_sessions.labels(kind)
            self.leaked_sessions.labels(kind)
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
        for action in ACTIONS:
            self.zego_request_duration.labels(action)
            self.zego_rate_limit_waits.labels(action)
            self.zego_rate_limit_wait_seconds.labels(action)
            self.zego_retries.labels(action)
            for code in ("0", *ZEGO_TRANSPORT_OUTCOMES):
                self.zego_requests.labels(action, code)
        for event, result in itertools.product(CALLBACK_EVENTS, CALLBACK_RESULTS):
            self.callbacks_received.labels(event, result)
            if result == "malformed":
                for problem in CALLBACK_PROBLEMS:
                    self.callbacks_invalid.labels(event, problem)
        for event_type in EVENT_TYPES:
            self.events_appended.labels(event_type)
        for event_type in (*EVENT_TYPES, "unknown"):
            self.events_unreadable.labels(event_type)
        for stage in STAGES:
            self.zego_stage_latency.labels(stage)

    def session_created(self, kind: str, outcome: str) -> None:
        """Count one CreateSession outcome (one of :data:`CREATE_OUTCOMES`)."""
        self.sessions_created.labels(_kind(kind), _check(outcome, CREATE_OUTCOMES, "outcome")).inc()

    def session_ended(self, kind: str, reason: str, duration_seconds: float | None = None) -> None:
        """Count a session reaching ENDED/FAILED (``reason``: an ``EndReason``, any case); observe its
        lifetime (creation to end) when ``duration_seconds`` is given."""
        kind = _kind(kind)
        self.sessions_ended.labels(kind, _check(reason.lower(), END_REASONS, "reason")).inc()
        if duration_seconds is not None:
            self.session_duration.labels(kind).observe(max(duration_seconds, 0.0))

    def admission_rejected(self, kind: str) -> None:
        """Count one request refused for lack of a capacity slot."""
        self.admission_rejections.labels(_kind(kind)).inc()

    def possible_leak(self, kind: str) -> None:
        """Count one session closed without confirming its ZEGO instance is gone."""
        self.possible_leaks.labels(_kind(kind)).inc()

    def set_limits(self, limits: Mapping[str, int]) -> None:
        """Set ``agentgw_session_limit`` from per-pool limits (``SessionKind.pool`` keys)."""
        for kind in SessionKind:
            if kind.pool in limits:
                self.session_limit.labels(kind.value).set(limits[kind.pool])

    async def refresh_from_ledger(
        self,
        ledger: SessionCounts,
        limits: Mapping[str, int],
        *,
        leak_give_up_seconds: float | None = None,
    ) -> None:
        """Set ``agentgw_sessions`` for every kind x state (zero where the ledger has none) and the
        limits, so the gauges are exact right after a restart and at every scrape.

        With ``leak_give_up_seconds`` and a ledger that has ``leak_counts``, also set the suspect
        and leaked gauges (a leak: suspect for longer than the give-up time since its end).
        """
        counts = await ledger.count_by_kind_state()
        for kind in SessionKind:
            for state in SessionState:
                self.sessions.labels(kind.value, state.value).set(counts.get((kind, state), 0))
        self.set_limits(limits)
        leak_counts = getattr(ledger, "leak_counts", None)
        if leak_give_up_seconds is not None and leak_counts is not None:
            leaks: Mapping[SessionKind, tuple[int, int]] = await leak_counts(
                time.time() - leak_give_up_seconds
            )
            for kind in SessionKind:
                suspect, leaked = leaks.get(kind, (0, 0))
                self.suspect_sessions.labels(kind.value).set(suspect)
                self.leaked_sessions.labels(kind.value).set(leaked)

    def zego_request(self, action: str, code: str, seconds: float) -> None:
        """Count one ZEGO attempt and observe its duration; unknown actions fold into "other"."""
        action = action if action in ACTIONS else "other"
        if code not in self._zego_codes:
            if len(self._zego_codes) < _MAX_ZEGO_CODES and code.lstrip("-").isdigit():
                self._zego_codes.add(code)
            else:
                code = "other"
        self.zego_requests.labels(action, code).inc()
        self.zego_request_duration.labels(action).observe(seconds)

    def zego_stage(self, stage: str, seconds: float) -> None:
        """Observe one LatencyData average (ms / 1000) from AgentInstanceDeleted."""
        self.zego_stage_latency.labels(_check(stage, STAGES, "stage")).observe(seconds)

    def callback(self, event: str, result: str, seconds: float, problem: str = "") -> None:
        """Count one callback (unknown event names become "unknown") and observe its handling time;
        for a malformed one with a ``problem`` (one of :data:`CALLBACK_PROBLEMS`), count that too."""
        event = event if event in CALLBACK_EVENTS else "unknown"
        self.callbacks_received.labels(event, _check(result, CALLBACK_RESULTS, "result")).inc()
        if problem and result == "malformed":
            self.callbacks_invalid.labels(event, _check(problem, CALLBACK_PROBLEMS, "problem")).inc()
        self.callback_handling.observe(seconds)

    def event_unreadable(self, event_type: str) -> None:
        """Count a stored event delivered as unreadable (its stored type, else "unknown")."""
        self.events_unreadable.labels(event_type if event_type in EVENT_TYPES else "unknown").inc()

    def event_appended(self, event_type: str) -> None:
        """Count one event appended to the log (one of :data:`EVENT_TYPES`)."""
        self.events_appended.labels(_check(event_type, EVENT_TYPES, "event type")).inc()

    def event_delivered(self, seconds: float) -> None:
        """Observe callback arrival -> written to one subscriber's stream (live events only)."""
        self.event_delivery.observe(seconds)

    def subscriber_added(self) -> None:
        """A WatchEvents subscription opened."""
        self.event_subscribers.inc()

    def subscriber_removed(self) -> None:
        """A WatchEvents subscription closed, for whatever reason."""
        self.event_subscribers.dec()

    def subscriber_overflow(self) -> None:
        """A subscriber was dropped for falling behind (call ``subscriber_removed`` too)."""
        self.subscriber_overflows.inc()

    def interaction(self, kind: str, trigger: str, seconds: float, budget_exceeded: bool) -> None:
        """Observe one answered turn; ``budget_exceeded`` is the tracker's verdict against its budget."""
        labels = (_kind(kind), _check(trigger, TRIGGERS, "trigger"))
        self.interaction_latency.labels(*labels).observe(seconds)
        if budget_exceeded:
            self.interaction_budget_exceeded.labels(*labels).inc()

    def turn_abandoned(self, kind: str, trigger: str) -> None:
        """Count a turn that ended with no agent response (do not also call :meth:`interaction`)."""
        self.interaction_turns_abandoned.labels(_kind(kind), _check(trigger, TRIGGERS, "trigger")).inc()

    # --- the fleet runtime (service.domain.lease, service.store.pg_feed) ---------------------------

    def _add_fleet_families(self) -> None:
        r = self.registry
        self.lease_holder = Gauge(
            "agentgw_lease_held",
            "1 while this replica holds the reaper lease (reconciliation, reaping, leak retries,"
            " retention run there only); across a fleet the sum is 1.",
            registry=r,
        )
        self.feed_lag = Gauge(
            "agentgw_event_feed_lag_seconds",
            "How long before its delivery by this replica's log tailer the newest event was received"
            " (by whichever replica); 0 with the embedded ledger, which publishes as it stores.",
            registry=r,
        )

    def lease_held(self, lease: str, held: bool) -> None:
        """This replica acquired (True) or lost (False) the reaper lease."""
        self.lease_holder.set(1 if held else 0)

    def feed_delivered(self, lag_seconds: float) -> None:
        """The tailer delivered events; the newest was received ``lag_seconds`` ago."""
        self.feed_lag.set(max(0.0, lag_seconds))


class ZegoMetricsObserver:
    """``service.zego.actions.ClientObserver`` recording into :class:`Metrics`; never raises."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def request_finished(self, action: str, outcome: str, seconds: float) -> None:
        """One attempt ended with ``outcome`` (a ZEGO code or a transport class)."""
        self._metrics.zego_request(str(action), outcome, seconds)

    def rate_limit_waited(self, action: str, seconds: float) -> None:
        """The local rate limiter delayed an attempt."""
        action = action if action in ACTIONS else "other"
        self._metrics.zego_rate_limit_waits.labels(action).inc()
        self._metrics.zego_rate_limit_wait_seconds.labels(action).inc(max(seconds, 0.0))

    def retried(self, action: str) -> None:
        """A read-only action is retried."""
        self._metrics.zego_retries.labels(action if action in ACTIONS else "other").inc()
