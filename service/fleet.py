"""The fleet's part of the wiring (a replica on the shared PostgreSQL ledger), for ``service.core``.

The tailer of the shared log feeds the local bus and the latency tracker; the reaper lease decides
which replica reconciles, reaps, retries leaks and purges. See docs/fleet-runtime.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict

from service.config import LatencySettings, RetentionSettings
from service.domain.event_log import EventBus, EventLog
from service.domain.latency import LatencyInbox, LatencyObserver, LatencyTracker
from service.domain.lease import while_held
from service.domain.ports import Ledger
from service.domain.reaper import Reaper
from service.domain.retention import retention_loop
from service.domain.shared_turns import FleetLatencyTracker
from service.metrics import Metrics
from service.store.pg_fleet import FleetRuntime

__all__ = ["LEASE_WAIT_SECONDS", "fleet_latency", "lead_while_held"]

log = logging.getLogger("agentgw")

LEASE_WAIT_SECONDS = 1.0
"""How long a starting fleet replica waits to win the reaper lease before it serves without it."""


async def fleet_latency(
    fleet: FleetRuntime,
    inbox: LatencyInbox,
    events: EventLog,
    bus: EventBus,
    metrics: Metrics,
    settings: LatencySettings,
    stack: contextlib.AsyncExitStack,
) -> LatencyTracker:
    """The tracker of a fleet replica, fed by the log's tailer (which also feeds the bus)."""
    observer: LatencyObserver = metrics
    latency = FleetLatencyTracker(
        fleet.ledger, inbox, events, observer, settings=settings, recording=lambda: fleet.lease.held
    )
    await stack.enter_async_context(latency)
    await fleet.start_tailer(bus, [latency.feed], stack, observer=metrics)
    return latency


async def lead_while_held(
    fleet: FleetRuntime,
    reaper: Reaper,
    ledger: Ledger,
    settings: RetentionSettings,
    stack: contextlib.AsyncExitStack,
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
async def _leader_duties(reaper: Reaper, ledger: Ledger, settings: RetentionSettings) -> AsyncIterator[None]:
    """What the lease holder runs: reconcile first (rows of dead replicas only), then reap and purge."""
    report = await reaper.reconcile_at_startup()
    log.info("ledger reconciled by the lease holder", extra={"report": asdict(report)})
    async with reaper, retention_loop(ledger, settings):
        yield
