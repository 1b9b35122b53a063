"""The fleet runtime of one replica on the PostgreSQL ledger, assembled for ``service.core``.

What a replica adds when its ledger is shared (each piece documents its own design):

* :class:`~service.store.pg_replicas.PgReplicaRegistry`: its heartbeat, so the lease holder never
  resolves the PENDING rows of a live replica's creates;
* :class:`~service.store.pg_lease.PgAdvisoryLease`: the reaper lease (reconciliation, reaping,
  leak retries and retention run on its holder only);
* :class:`~service.store.pg_feed.PgEventTailer`: the shared log, in cursor order, into the local
  bus and the latency tracker.

Everything is entered into the caller's exit stack, in an order that releases it safely: the
tailer stops first, then the lease (another replica takes over), then the heartbeat row is removed
(this replica's leftovers become the new holder's at once).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from service.domain.events import Event
from service.domain.lease import LeaseObserver
from service.store.pg_feed import FeedObserver, PgEventTailer, PgLogReader, Publisher
from service.store.pg_lease import PgAdvisoryLease
from service.store.pg_replicas import PgReplicaRegistry, new_replica_id, pool_options
from service.store.postgres import PostgresLedger

__all__ = ["FleetRuntime", "new_replica_id", "pool_options", "start_fleet"]


@dataclass
class FleetRuntime:
    """This replica's part in the fleet."""

    replica_id: str
    replicas: PgReplicaRegistry
    lease: PgAdvisoryLease
    url: str
    ledger: PostgresLedger

    async def start_tailer(
        self,
        bus: Publisher,
        observers: Sequence[Callable[[Event], None]],
        stack: contextlib.AsyncExitStack,
        *,
        observer: FeedObserver | None = None,
        poll_seconds: float = 1.0,
    ) -> PgEventTailer:
        """Start tailing the log into ``bus`` and ``observers`` (from the log's current head)."""
        tailer = PgEventTailer(
            self.url,
            PgLogReader(self.ledger.database),
            bus,
            observers=observers,
            poll_seconds=poll_seconds,
            observer=observer,
        )
        return await stack.enter_async_context(tailer)


async def start_fleet(
    url: str,
    ledger: PostgresLedger,
    replica_id: str,
    stack: contextlib.AsyncExitStack,
    *,
    observer: LeaseObserver | None = None,
) -> FleetRuntime:
    """Register the replica (first heartbeat written) and start contending for the lease."""
    replicas = await stack.enter_async_context(PgReplicaRegistry(ledger.database, replica_id))
    lease = await stack.enter_async_context(PgAdvisoryLease(url, observer=observer))
    return FleetRuntime(replica_id, replicas, lease, url, ledger)
