"""agentgw's Prometheus metrics: the one recording API (conventions §4); the families, their labels and
buckets are declared in ``service.metric_families``.

A :class:`Metrics` owns one ``CollectorRegistry``: the gateway creates one, tests their own. Every label
takes values from a bounded set derived from the domain's enums, and every combination exists at zero
from the start, so ``rate()`` sees the first event. No label carries a session, agent, room, user or
request id (conventions §4.8). Methods raise ``ValueError`` for a value outside our own enums (a bug) and fold
values from outside (ZEGO codes, callback event names) into ``"other"`` / ``"unknown"``.

Example::

    metrics = Metrics(version="0.1.0")
    metrics.session_created("voice", "created")
    metrics.interaction("voice", "user_speech", 1.2, budget_exceeded=False)
    zego = ZegoClient(..., observer=ZegoMetricsObserver(metrics))
    await metrics.refresh_from_ledger(ledger, {"voice": 10, "digital_human": 2})
    body = prometheus_client.generate_latest(metrics.registry)

The handler wrapper of ``service.api.rpc_handlers`` feeds the ``grpc_server_*`` families
(go-grpc-prometheus style) through ``service.api.metrics_interceptor``. Like go-grpc-prometheus,
nothing exports ``*_created`` series.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from importlib import metadata
from typing import Final, Protocol

import prometheus_client

from service.domain.model import SessionKind, SessionState
from service.metric_families import (
    ACTIONS,
    CALLBACK_EVENTS,
    CALLBACK_PROBLEMS,
    CALLBACK_RESULTS,
    CREATE_OUTCOMES,
    END_REASONS,
    EVENT_TYPES,
    GO_DEFAULT_BUCKETS,
    INTERACTION_BUCKETS,
    KINDS,
    LATENCY_BUCKETS,
    STAGES,
    STATES,
    TRIGGERS,
    ZEGO_TRANSPORT_OUTCOMES,
    MetricFamilies,
)

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


class Metrics(MetricFamilies):
    """All of agentgw's metric families on one private registry, with typed recording methods.

    Args:
        version: reported by ``agentgw_build_info``; defaults to the installed package's version.
        interaction_budget_seconds: the turn-latency budget exported as a gauge (ZEGO advertises 1.5 s).
    """

    def __init__(self, *, version: str | None = None, interaction_budget_seconds: float = 1.5) -> None:
        super().__init__()
        self.build_info.labels(version or _package_version()).set(1)
        self.interaction_budget.set(interaction_budget_seconds)
        self._zego_codes: set[str] = {"0", *ZEGO_TRANSPORT_OUTCOMES}

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
