"""The gateway's core, wired once: ledger, ZEGO client, event log, sessions, reaper, latency.

Nothing here knows gRPC or HTTP; ``service.server`` puts the transports on top. Everything with
a lifetime is entered into the caller's ``AsyncExitStack``, so it is released in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

from service.auth.principal import current_principal
from service.config import Settings, redact_url
from service.domain.agents import AgentService
from service.domain.audit import AuditTrail
from service.domain.digital_humans import DigitalHumanCatalog
from service.domain.event_log import EventBus, EventLog
from service.domain.ingest import CallbackIngestor
from service.domain.latency import LatencyTracker
from service.domain.leaks import LeakPolicy
from service.domain.lease import while_held
from service.domain.model import EndReason, SessionKind
from service.domain.quotas import QuotaPolicy, load_quotas
from service.domain.reaper import Reaper
from service.domain.sessions import SessionService
from service.domain.shared_turns import FleetLatencyTracker
from service.metrics import Metrics, ZegoMetricsObserver
from service.store.base import Ledger
from service.store.pg_fleet import FleetRuntime, new_replica_id, pool_options, start_fleet
from service.store.postgres import PoolOptions, PostgresLedger
from service.store.sqlite import SqliteLedger
from service.zego.client import ZegoClient
from service.zego.ratelimit import FairRateLimiter

__all__ = ["Core", "build_core"]

log = logging.getLogger("agentgw")

RETENTION_INTERVAL_SECONDS = 60.0
LEASE_WAIT_SECONDS = 1.0
"""How long a starting fleet replica waits to win the reaper lease before it serves without it."""


@dataclass
class Core:
    """The wired domain services."""

    ledger: Ledger
    zego: ZegoClient
    bus: EventBus
    events: EventLog
    agents: AgentService
    sessions: SessionService
    latency: LatencyTracker
    ingestor: CallbackIngestor
    limits: dict[str, int]
    digital_humans: DigitalHumanCatalog
    audit: AuditTrail


class _ReaperMetrics:
    """The reaper's hooks: leaks are counted here; ends are counted once, by the event log."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def possible_leak(self, kind: SessionKind) -> None:
        self._metrics.possible_leak(kind.value)

    def session_ended(self, kind: SessionKind, reason: EndReason) -> None:
        return None


async def build_core(settings: Settings, stack: contextlib.AsyncExitStack, metrics: Metrics) -> Core:
    """Open the ledger, reconcile it with ZEGO, and start the background tasks."""
    assert settings.zego_app_id is not None and settings.zego_server_secret is not None
    limits = {"voice": settings.voice_limit, "digital_human": settings.digital_human_limit}
    # A replica of a fleet (a shared PostgreSQL ledger) has an id its rows and heartbeats carry.
    replica_id = new_replica_id() if settings.database_url is not None else ""
    ledger = _open_ledger(settings, replica_id)
    await ledger.open()
    stack.push_async_callback(ledger.close)
    await metrics.refresh_from_ledger(ledger, limits, leak_give_up_seconds=settings.leak_give_up_seconds)

    quotas = load_quotas(settings.quotas_file) if settings.quotas_file is not None else None
    zego = ZegoClient(
        app_id=settings.zego_app_id,
        server_secret=settings.zego_server_secret.reveal(),
        base_url=settings.zego_api_base,
        digital_human_base_url=settings.zego_digital_human_api_base,
        timeout_seconds=settings.zego_timeout_seconds,
        rate_per_second=settings.zego_rate_per_second,
        max_retries=settings.zego_max_retries,
        observer=ZegoMetricsObserver(metrics),
        limiter=_fair_limiter(settings, quotas),
    )
    stack.push_async_callback(zego.aclose)

    bus = EventBus(
        queue_size=settings.subscriber_queue_size,
        heartbeat_seconds=settings.heartbeat_seconds,
        observer=metrics,
    )
    await stack.enter_async_context(bus)
    events = EventLog(ledger, bus, observer=metrics, publish=not replica_id)
    await events.start()
    sessions = SessionService(
        zego,
        ledger,
        limits=limits,
        default_max_duration_seconds=settings.max_session_duration_seconds,
        events=events,
        observer=metrics,
        end_confirm_seconds=settings.end_confirm_seconds,
        quotas=quotas,
        leak_policy=LeakPolicy(
            give_up_seconds=settings.leak_give_up_seconds,
            retry_initial_seconds=settings.leak_retry_initial_seconds,
            retry_max_seconds=settings.leak_retry_max_seconds,
            call_timeout_seconds=settings.zego_timeout_seconds,
        ),
    )
    fleet = None
    if isinstance(ledger, PostgresLedger) and settings.database_url is not None:
        fleet = await start_fleet(settings.database_url.reveal(), ledger, replica_id, stack, observer=metrics)
        latency: LatencyTracker = await _fleet_latency(fleet, events, bus, metrics, settings, stack)
    else:
        latency = LatencyTracker(ledger, events, metrics, budget_seconds=settings.interaction_budget_seconds)
        await stack.enter_async_context(latency)
        events.on_event = latency.on_event

    reaper = Reaper(
        sessions,
        call_timeout_seconds=settings.zego_timeout_seconds,
        observer=_ReaperMetrics(metrics),
        replicas=fleet.replicas if fleet is not None else None,
    )
    if fleet is not None:
        # One replica at a time reconciles, reaps, retries leaks and purges: the lease holder.
        await _lead_while_held(fleet, reaper, ledger, settings, stack)
    else:
        # Before serving: settle what a previous process left (PENDING rows, instances gone
        # upstream). Healthy sessions are picked up as they are.
        metrics.lease_held("reaper", True)  # the only process: always the holder
        report = await reaper.reconcile_at_startup()
        log.info("ledger reconciled", extra={"report": asdict(report)})
        await stack.enter_async_context(reaper)
        await stack.enter_async_context(_retention(ledger, settings))

    if settings.zego_callback_secret is None:
        log.warning("AGENTGW_ZEGO_CALLBACK_SECRET is not set: every ZEGO callback will be rejected")
    ingestor = CallbackIngestor(
        sessions,
        settings.zego_callback_secret.reveal() if settings.zego_callback_secret else None,
        skew_seconds=settings.callback_skew_seconds,
    )
    agents = AgentService(zego, ledger)
    digital_humans = DigitalHumanCatalog(
        zego,
        ttl_seconds=settings.digital_human_cache_seconds,
        not_found_ttl_seconds=settings.digital_human_not_found_cache_seconds,
        validation=settings.digital_human_validation,
    )
    return Core(
        ledger,
        zego,
        bus,
        events,
        agents,
        sessions,
        latency,
        ingestor,
        limits,
        digital_humans,
        AuditTrail(ledger),
    )


async def _fleet_latency(
    fleet: FleetRuntime,
    events: EventLog,
    bus: EventBus,
    metrics: Metrics,
    settings: Settings,
    stack: contextlib.AsyncExitStack,
) -> LatencyTracker:
    """The tracker of a fleet replica, fed by the log's tailer (which also feeds the bus)."""
    latency = FleetLatencyTracker(
        fleet.ledger,
        events,
        metrics,
        budget_seconds=settings.interaction_budget_seconds,
        recording=lambda: fleet.lease.held,
    )
    await stack.enter_async_context(latency)
    await fleet.start_tailer(bus, [latency.feed], stack, observer=metrics)
    return latency


async def _lead_while_held(
    fleet: FleetRuntime, reaper: Reaper, ledger: Ledger, settings: Settings, stack: contextlib.AsyncExitStack
) -> None:
    """Run the lease holder's duties whenever this replica holds the lease. A replica that wins it at
    start-up (the first, or the only one) reconciles before it serves, as a single process does."""
    tried = asyncio.Event()
    await stack.enter_async_context(
        while_held(fleet.lease, lambda: _leader_duties(reaper, ledger, settings), tried=tried)
    )
    try:
        await asyncio.wait_for(fleet.lease.acquired(), LEASE_WAIT_SECONDS)
    except TimeoutError:
        log.info("another replica holds the reaper lease; serving without it")
        return
    await tried.wait()


@contextlib.asynccontextmanager
async def _leader_duties(reaper: Reaper, ledger: Ledger, settings: Settings) -> AsyncIterator[None]:
    """What the lease holder runs: reconcile first (rows of dead replicas only), then reap and purge."""
    report = await reaper.reconcile_at_startup()
    log.info("ledger reconciled by the lease holder", extra={"report": asdict(report)})
    async with reaper, _retention(ledger, settings):
        yield


def _open_ledger(settings: Settings, replica_id: str = "") -> Ledger:
    """The ledger the settings select: PostgreSQL with ``database_url`` (shareable by a fleet;
    no file lock), else the SQLite file (one owner, under its lock)."""
    if settings.database_url is not None:
        url = settings.database_url.reveal()
        options = PoolOptions(
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            statement_timeout_seconds=settings.db_statement_timeout_seconds,
        )
        if replica_id:
            options = pool_options(replica_id, options)
        return PostgresLedger(url, options=options, name=redact_url(url))
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteLedger(settings.db_path)


def _fair_limiter(settings: Settings, quotas: QuotaPolicy | None) -> FairRateLimiter | None:
    """The ZEGO client's limiter when quotas give callers a share of the rate; else its default."""
    if quotas is None or not quotas.limits_rate:
        return None
    return FairRateLimiter(
        settings.zego_rate_per_second,
        caller=lambda: current_principal().name,
        share=lambda name: quotas.for_caller(name).rate_share,
    )


@contextlib.asynccontextmanager
async def _retention(ledger: Ledger, settings: Settings) -> AsyncIterator[None]:
    """Purge events past retention, request ids past their window and expired callback nonces,
    once a minute."""

    async def loop() -> None:
        while True:
            now = time.time()
            try:
                removed = await ledger.purge_events(now - settings.event_retention_seconds)
                removed += await ledger.purge(
                    idempotency_before=now - settings.idempotency_ttl_seconds, sessions_ended_before=0.0
                )
                removed += await ledger.purge_audit(now - settings.audit_retention_seconds)
                removed += await ledger.purge_callback_nonces(now)
                if removed:
                    log.info("retention purge", extra={"rows": removed})
            except Exception:
                log.exception("retention purge failed; retrying later")
            await asyncio.sleep(RETENTION_INTERVAL_SECONDS)

    task = asyncio.create_task(loop(), name="retention")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
