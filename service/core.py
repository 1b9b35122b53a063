"""The gateway's core, wired once: ledger, ZEGO client, event log, sessions, reaper, latency.

Nothing here knows gRPC or HTTP; ``service.server`` puts the transports on top. Everything with
a lifetime is entered into the caller's ``AsyncExitStack``, so it is released in reverse order.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import asdict, dataclass

from service.auth.principal import current_principal
from service.config import LedgerSettings, Settings, ZegoSettings, redact_url
from service.domain.agents import AgentService
from service.domain.audit import AuditTrail
from service.domain.digital_humans import DigitalHumanCatalog
from service.domain.event_log import EventBus, EventLog, EventMetrics
from service.domain.ingest import CallbackIngestor
from service.domain.latency import LatencyInbox, LatencyTracker
from service.domain.leaks import LeakPolicy
from service.domain.model import SessionKind
from service.domain.ports import Ledger, LogObserver
from service.domain.quotas import QuotaPolicy, load_quotas
from service.domain.reaper import Reaper
from service.domain.retention import retention_loop
from service.domain.sessions import SessionService
from service.domain.watch import EventWatch
from service.fleet import fleet_latency, lead_while_held
from service.metrics import Metrics, ZegoMetricsObserver
from service.store.pg_fleet import FleetRuntime, new_replica_id, pool_options, start_fleet
from service.store.postgres import PoolOptions, PostgresLedger
from service.store.sqlite import SqliteLedger
from service.zego.adapter import ZegoAdapter
from service.zego.client import ZegoClient
from service.zego.ratelimit import FairRateLimiter
from service.zego.signing import verify_callback_signature

__all__ = ["Core", "build_core"]

log = logging.getLogger("agentgw")


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
    watch: EventWatch


class _ReaperMetrics:
    """The reaper's hook: leaks are counted here (session ends are counted once, by the event
    log's EventMetrics, whoever ends them)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def possible_leak(self, kind: SessionKind) -> None:
        self._metrics.possible_leak(kind.value)


async def build_core(settings: Settings, stack: contextlib.AsyncExitStack, metrics: Metrics) -> Core:
    """Open the ledger, reconcile it with ZEGO, and start the background tasks.

    Every collaborator is handed over at construction, in dependency order; nothing is assigned
    to a component after it is built.
    """
    limits = settings.sessions.limits
    # A replica of a fleet (a shared PostgreSQL ledger) has an id its rows and heartbeats carry.
    replica_id = new_replica_id() if settings.ledger.database_url is not None else ""
    ledger = await _open_ledger(settings.ledger, stack, replica_id)
    await metrics.refresh_from_ledger(ledger, limits, leak_give_up_seconds=settings.leaks.give_up_seconds)
    quotas_file = settings.sessions.quotas_file
    quotas = load_quotas(quotas_file) if quotas_file is not None else None
    zego = _zego_client(settings.zego, metrics, quotas)
    stack.push_async_callback(zego.aclose)
    port = ZegoAdapter(zego)  # what the domain calls: domain types in, domain types out

    bus = EventBus(settings=settings.events, observer=metrics)
    await stack.enter_async_context(bus)
    # The tracker's inbox hears the log's commits; the tracker appends its breach events to the
    # log: the inbox is built first, so neither the log nor the tracker needs the other to exist.
    # In a fleet the shared log's tailer feeds the bus and the inbox instead (every replica's
    # events, in cursor order): the log then neither publishes nor tells the inbox itself.
    latency_inbox = LatencyInbox()
    alone = not replica_id
    observers: list[LogObserver] = (
        [EventMetrics(metrics), latency_inbox] if alone else [EventMetrics(metrics)]
    )
    events = EventLog(ledger, bus, observers=observers, publish=alone)
    await events.start()
    sessions = _session_service(settings, port, ledger, events, metrics, quotas)
    fleet = None
    if isinstance(ledger, PostgresLedger) and settings.ledger.database_url is not None:
        url = settings.ledger.database_url.reveal()
        fleet = await start_fleet(url, ledger, replica_id, stack, observer=metrics)
    latency = await _latency(fleet, ledger, latency_inbox, events, bus, metrics, settings, stack)
    await _reconcile_and_reap(settings, sessions, ledger, metrics, stack, fleet)

    ingestor = _ingestor(settings, ledger, events, sessions)
    digital_humans = DigitalHumanCatalog(port, settings=settings.digital_humans)
    return Core(
        ledger,
        zego,
        bus,
        events,
        AgentService(port, ledger),
        sessions,
        latency,
        ingestor,
        limits,
        digital_humans,
        AuditTrail(ledger),
        EventWatch(ledger, bus, on_delivered=metrics.event_delivered),
    )


async def _latency(
    fleet: FleetRuntime | None,
    ledger: Ledger,
    inbox: LatencyInbox,
    events: EventLog,
    bus: EventBus,
    metrics: Metrics,
    settings: Settings,
    stack: contextlib.AsyncExitStack,
) -> LatencyTracker:
    """The latency tracker: fed by the log's observers alone, by the shared log's tailer in a fleet."""
    if fleet is not None:
        return await fleet_latency(fleet, inbox, events, bus, metrics, settings.latency, stack)
    latency = LatencyTracker(ledger, inbox, events, metrics, settings=settings.latency)
    await stack.enter_async_context(latency)
    return latency


def _ingestor(
    settings: Settings, ledger: Ledger, events: EventLog, sessions: SessionService
) -> CallbackIngestor:
    """The callback ingestor, with ZEGO's signature check bound to the CallbackSecret here (the
    domain never holds the secret)."""
    callback_secret = settings.zego.callback_secret
    if callback_secret is None:
        log.warning("AGENTGW_ZEGO_CALLBACK_SECRET is not set: every ZEGO callback will be rejected")
    return CallbackIngestor(
        ledger,
        events,
        sessions.leaks,
        functools.partial(verify_callback_signature, callback_secret.reveal()) if callback_secret else None,
        settings=settings.callbacks,
    )


async def _open_ledger(settings: LedgerSettings, stack: contextlib.AsyncExitStack, replica_id: str) -> Ledger:
    """Open the ledger the settings select: PostgreSQL with ``database_url`` (shareable by a fleet;
    no file lock; its connections carry ``replica_id``), else the SQLite file (one owner, under its
    lock)."""
    ledger = _ledger_for(settings, replica_id)
    await ledger.open()
    stack.push_async_callback(ledger.close)
    return ledger


def _ledger_for(settings: LedgerSettings, replica_id: str) -> Ledger:
    if settings.database_url is not None:
        url = settings.database_url.reveal()
        options = PoolOptions(
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            statement_timeout_seconds=settings.statement_timeout_seconds,
        )
        if replica_id:
            options = pool_options(replica_id, options)
        return PostgresLedger(url, options=options, name=redact_url(url))
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteLedger(settings.db_path)


def _zego_client(settings: ZegoSettings, metrics: Metrics, quotas: QuotaPolicy | None) -> ZegoClient:
    assert settings.app_id is not None and settings.server_secret is not None
    return ZegoClient(
        app_id=settings.app_id,
        server_secret=settings.server_secret.reveal(),
        base_url=settings.api_base,
        digital_human_base_url=settings.digital_human_api_base,
        timeout_seconds=settings.timeout_seconds,
        rate_per_second=settings.rate_per_second,
        max_retries=settings.max_retries,
        observer=ZegoMetricsObserver(metrics),
        limiter=_fair_limiter(settings, quotas),
    )


def _session_service(
    settings: Settings,
    zego: ZegoAdapter,
    ledger: Ledger,
    events: EventLog,
    metrics: Metrics,
    quotas: QuotaPolicy | None,
) -> SessionService:
    return SessionService(
        zego,
        ledger,
        settings=settings.sessions,
        events=events,
        observer=metrics,
        quotas=quotas,
        leak_policy=LeakPolicy(
            give_up_seconds=settings.leaks.give_up_seconds,
            retry_initial_seconds=settings.leaks.retry_initial_seconds,
            retry_max_seconds=settings.leaks.retry_max_seconds,
            call_timeout_seconds=settings.zego.timeout_seconds,
        ),
    )


async def _reconcile_and_reap(
    settings: Settings,
    sessions: SessionService,
    ledger: Ledger,
    metrics: Metrics,
    stack: contextlib.AsyncExitStack,
    fleet: FleetRuntime | None,
) -> None:
    """Before serving: settle what a previous process left (PENDING rows, instances gone
    upstream), then keep reaping and purging. Healthy sessions are picked up as they are. In a
    fleet only the lease holder does this (and never touches a live replica's creates)."""
    reaper = Reaper(
        sessions,
        settings=settings.reaper,
        call_timeout_seconds=settings.zego.timeout_seconds,
        observer=_ReaperMetrics(metrics),
        replicas=fleet.replicas if fleet is not None else None,
    )
    if fleet is not None:
        await lead_while_held(fleet, reaper, ledger, settings.retention, stack)
        return
    metrics.lease_held("reaper", True)  # the only process: always the holder
    report = await reaper.reconcile_at_startup()
    log.info("ledger reconciled", extra={"report": asdict(report)})
    await stack.enter_async_context(reaper)
    await stack.enter_async_context(retention_loop(ledger, settings.retention))


def _fair_limiter(settings: ZegoSettings, quotas: QuotaPolicy | None) -> FairRateLimiter | None:
    """The ZEGO client's limiter when quotas give callers a share of the rate; else its default."""
    if quotas is None or not quotas.limits_rate:
        return None
    return FairRateLimiter(
        settings.rate_per_second,
        caller=lambda: current_principal().name,
        share=lambda name: quotas.for_caller(name).rate_share,
    )
