"""The domain's sections of the settings: sessions, callbacks, events, retention, leaks, latency,
the reaper and the digital-human catalog. Each is handed whole to the component that consumes it
(``Reaper(..., settings=ReaperSettings)``); see ``service.config.sections`` for the conventions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.config import values as v
from service.config.values import setting

__all__ = [
    "REAPER_MAX_INTERVAL_SECONDS",
    "CallbackSettings",
    "DigitalHumanSettings",
    "EventSettings",
    "LatencySettings",
    "LeakSettings",
    "ReaperSettings",
    "RetentionSettings",
    "SessionSettings",
]

REAPER_MAX_INTERVAL_SECONDS = 3600.0
"""The longest time allowed between reaper passes (the reaper refuses a longer interval too)."""


def _reaper_interval(raw: str) -> float:
    value = v.positive_float(raw)
    if value > REAPER_MAX_INTERVAL_SECONDS:
        raise ValueError(f"must be at most {REAPER_MAX_INTERVAL_SECONDS:g} seconds")
    return value


@dataclass(frozen=True)
class SessionSettings:
    """Admission and lifetimes of sessions (``service.domain.sessions``, the SessionService API)."""

    voice_limit: int = setting(10, v.positive_int, "Concurrent voice instances allowed.", key="voice_limit")
    """Admission limit for voice sessions (ZEGO's default cap is 10 per AppId)."""

    digital_human_limit: int = setting(
        10, v.positive_int, "Concurrent digital-human instances allowed.", key="digital_human_limit"
    )
    """Admission limit shared by digital-human and live digital-human sessions."""

    max_duration_seconds: int = setting(
        3600, v.positive_int, "Default session max_duration.", key="max_session_duration_seconds"
    )
    """A session without max_duration is ended after this long."""

    max_duration_cap_seconds: int = setting(
        86400, v.positive_int, "Largest max_duration allowed.", key="max_session_duration_cap_seconds"
    )
    """Requests asking for a longer max_duration are rejected."""

    end_confirm_seconds: float = setting(
        2.0, v.non_negative_float, "Wait for ZEGO's end callback.", key="end_confirm_seconds"
    )
    """After EndSession's delete, wait this long for ZEGO's AgentInstanceDeleted (it carries ZEGO's
    LatencyData) before synthesizing the session's ended event; 0 never waits."""

    quotas_file: Path | None = setting(None, v.existing_file, "Per-caller quotas (TOML).", key="quotas_file")
    """Concurrent sessions per pool and a share of ZEGO's request rate, per caller (see
    ``service.domain.quotas``); unset, callers share the pools freely."""

    @property
    def limits(self) -> dict[str, int]:
        """The admission limit of each pool."""
        return {"voice": self.voice_limit, "digital_human": self.digital_human_limit}


@dataclass(frozen=True)
class CallbackSettings:
    """What ZEGO's callbacks must satisfy (``service.domain.ingest`` and the HTTP endpoint)."""

    skew_seconds: float = setting(
        300.0, v.positive_float, "Allowed callback Timestamp skew.", key="callback_skew_seconds"
    )
    """Callbacks whose Timestamp is further than this from our clock are rejected as stale."""

    max_body_bytes: int = setting(
        1_048_576, v.positive_int, "Largest callback body accepted.", key="callback_max_body_bytes"
    )
    """Larger callback bodies are rejected with 413 before they are read in full."""


@dataclass(frozen=True)
class EventSettings:
    """The live event feed (``service.domain.event_log.EventBus``)."""

    subscriber_queue_size: int = setting(
        1000, v.positive_int, "Events buffered per subscriber.", key="subscriber_queue_size"
    )
    """A WatchEvents subscriber further behind than this is cut off (SUBSCRIBER_TOO_SLOW)."""

    heartbeat_seconds: float = setting(
        15.0, v.positive_float, "Heartbeat interval on idle streams.", key="heartbeat_seconds"
    )
    """Idle WatchEvents streams get a heartbeat with the current cursor this often."""


@dataclass(frozen=True)
class RetentionSettings:
    """How long the ledger keeps what it purges once a minute (``service.core``'s retention loop)."""

    events_seconds: int = setting(
        86400, v.positive_int, "How long events stay resumable.", key="event_retention_seconds"
    )
    """Events older than this are purged; resuming before them is CURSOR_EXPIRED."""

    idempotency_seconds: int = setting(
        86400, v.positive_int, "How long request_ids are honoured.", key="idempotency_ttl_seconds"
    )
    """A retried request_id returns the original result for at least this long."""

    audit_seconds: int = setting(
        7_776_000, v.positive_int, "How long audit records are kept.", key="audit_retention_seconds"
    )
    """Audit records older than this are purged (default 90 days)."""


@dataclass(frozen=True)
class LeakSettings:
    """How hard a possible leak is confirmed gone (``service.domain.leaks.LeakPolicy``)."""

    give_up_seconds: float = setting(
        3600.0, v.positive_float, "Give up confirming a leak after.", key="leak_give_up_seconds"
    )
    """An instance that may still run at ZEGO (a possible leak) is retried until ZEGO confirms it
    gone or this long after its session ended; then it is reported as a leak (metric, alert). Its
    capacity slot stays held either way."""

    retry_initial_seconds: float = setting(
        5.0, v.positive_float, "First delay between leak retries.", key="leak_retry_initial_seconds"
    )
    """The delay after the first failed attempt to confirm a possible leak gone; it doubles per attempt."""

    retry_max_seconds: float = setting(
        300.0, v.positive_float, "Largest delay between leak retries.", key="leak_retry_max_seconds"
    )
    """The cap of the doubling delay between attempts to confirm a possible leak gone."""


@dataclass(frozen=True)
class LatencySettings:
    """The interaction-latency budget (``service.domain.latency`` and the metrics)."""

    budget_seconds: float = setting(
        1.5, v.positive_float, "Turn-latency budget.", key="interaction_budget_seconds"
    )
    """A turn slower than this (end of user speech to agent speaking) is a budget breach."""


@dataclass(frozen=True)
class ReaperSettings:
    """The reaper's pass and its thresholds (``service.domain.reaper``; rules in its docstring)."""

    interval_seconds: float = setting(
        5.0, _reaper_interval, "Time between reaper passes (max 3600).", key="reaper_interval_seconds"
    )
    """How often the reaper looks at the ledger's sessions."""

    starting_timeout_seconds: float = setting(
        30.0,
        v.non_negative_float,
        "STARTING this long: ask ZEGO whether the instance runs.",
        key="reaper_starting_timeout_seconds",
    )
    """A session STARTING this long (since its last update) is checked upstream: alive -> ACTIVE."""

    ending_timeout_seconds: float = setting(
        60.0,
        v.non_negative_float,
        "ENDING this long: ask ZEGO whether the instance is gone.",
        key="reaper_ending_timeout_seconds",
    )
    """A session ENDING this long is checked upstream: gone -> ENDED."""

    pending_grace_seconds: float = setting(
        30.0,
        v.non_negative_float,
        "PENDING this long and not being created here: settle it.",
        key="reaper_pending_grace_seconds",
    )
    """A PENDING row older than this, whose create is not in flight in this process, was left by a
    process that died mid-create; longer than the ZEGO client's timeout."""

    active_probe_seconds: float = setting(
        60.0,
        v.positive_float,
        "How often an ACTIVE session is checked at ZEGO.",
        key="reaper_active_probe_seconds",
    )
    """An ACTIVE session not asked about for this long is checked upstream: unknown -> ENDED."""


@dataclass(frozen=True)
class DigitalHumanSettings:
    """The digital-human catalog's caching and checks (``service.domain.digital_humans``)."""

    cache_seconds: float = setting(
        300.0,
        v.non_negative_float,
        "How long digital-human lookups are cached.",
        key="digital_human_cache_seconds",
    )
    """Cache lifetime of avatar and voice answers; never past the avatar URL's 24 h validity."""

    not_found_cache_seconds: float = setting(
        10.0,
        v.non_negative_float,
        "How long an unknown digital_human_id is remembered.",
        key="digital_human_not_found_cache_seconds",
    )
    """A short negative cache, so a retried typo does not spend ZEGO's 10 requests/s."""

    validation: str = setting(
        "fail_open",
        v.validation_policy,
        "CreateSession's digital_human_id check: strict, fail_open, off.",
        key="digital_human_validation",
    )
    """``fail_open``: unknown ids are NOT_FOUND before any create, but if the Digital Human API cannot
    answer the create proceeds; ``strict`` fails it then; ``off`` never looks the id up [INFER]."""
