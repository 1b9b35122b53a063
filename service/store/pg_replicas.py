"""Replica liveness on PostgreSQL: heartbeats, and which replica's create a PENDING row is.

Each replica has an id (:func:`new_replica_id`) that its pool's connections carry as the session
setting ``agentgw.replica_id`` (:func:`pool_options`); the ``sessions.creator`` column defaults to
it (migration 10), so every row records the replica that inserted it without the store's INSERT
knowing about fleets. :class:`PgReplicaRegistry` writes the replica's heartbeat every
``heartbeat_seconds`` on the database's clock (no clock agreement between hosts needed); a
replica whose heartbeat is older than ``ttl_seconds`` is dead, and its PENDING rows become the
lease holder's to resolve. A replica that stops cleanly deletes its row: its leftovers are
resolvable at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time

from service.store.postgres import PoolOptions
from service.store.postgres.db import PgDatabase

__all__ = ["REPLICA_SETTING", "PgReplicaRegistry", "new_replica_id", "pool_options"]

log = logging.getLogger("agentgw.replicas")

REPLICA_SETTING = "agentgw.replica_id"
"""The session setting naming the replica a connection belongs to (read by ``sessions.creator``)."""

_NOW = "extract(epoch FROM clock_timestamp())"
_BEAT = (
    "INSERT INTO replicas (replica_id, started_at, heartbeat_at, draining)"
    f" VALUES ($1, {_NOW}, {_NOW}, $2)"
    f" ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = {_NOW}, draining = $2"
)
_IN_FLIGHT_ELSEWHERE = (
    "SELECT EXISTS (SELECT 1 FROM sessions s JOIN replicas r ON r.replica_id = s.creator"
    f" WHERE s.session_id = $1 AND s.creator <> $2 AND r.heartbeat_at > {_NOW} - $3)"
)


def new_replica_id() -> str:
    """A fresh id for this process: host, pid and a random part (a restarted pid is a new replica)."""
    host = socket.gethostname().split(".")[0][:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def pool_options(replica_id: str, base: PoolOptions) -> PoolOptions:
    """``base`` whose connections also carry the replica id (so new rows record their creator)."""

    class _ReplicaPoolOptions(PoolOptions):
        def server_settings(self) -> dict[str, str]:
            return {**super().server_settings(), REPLICA_SETTING: replica_id}

    return _ReplicaPoolOptions(
        min_size=base.min_size,
        max_size=base.max_size,
        statement_timeout_seconds=base.statement_timeout_seconds,
        connect_timeout_seconds=base.connect_timeout_seconds,
    )


class PgReplicaRegistry:
    """This replica's heartbeat, and the ``Replicas`` view the reaper asks (``service.domain.replicas``).

    Use as an async context manager: entering writes the first heartbeat (so the replica is alive
    before it takes any create) and starts the heartbeat task; exiting deletes the replica's row.
    """

    def __init__(
        self,
        db: PgDatabase,
        replica_id: str,
        *,
        heartbeat_seconds: float = 2.0,
        ttl_seconds: float = 10.0,
    ) -> None:
        if not (0 < heartbeat_seconds < ttl_seconds):
            raise ValueError("heartbeat_seconds must be positive and below ttl_seconds")
        self._db = db
        self.replica_id = replica_id
        self._every = heartbeat_seconds
        self.ttl_seconds = ttl_seconds
        self.draining = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PgReplicaRegistry:
        await self.beat()
        self._task = asyncio.create_task(self._beat_forever(), name="replica-heartbeat")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self._db.execute("DELETE FROM replicas WHERE replica_id = $1", self.replica_id)
        except Exception as exc:  # the heartbeat expires by itself
            log.warning("could not deregister replica %s: %s", self.replica_id, exc)

    async def beat(self) -> None:
        """Write the heartbeat now."""
        await self._db.execute(_BEAT, self.replica_id, 1 if self.draining else 0)

    async def mark_draining(self) -> None:
        """Record that this replica is draining (for operators; it still heartbeats until it exits)."""
        self.draining = True
        with contextlib.suppress(Exception):
            await self.beat()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            started = time.monotonic()
            try:
                await self.beat()
            except Exception as exc:
                log.warning("replica heartbeat failed (%s); retrying in %.1f s", exc, self._every)
            if time.monotonic() - started > self.ttl_seconds:
                log.error("a heartbeat took longer than the replica ttl: others may think this one dead")

    async def in_flight_elsewhere(self, session_id: str) -> bool:
        """Whether the row was created by another replica whose heartbeat is fresh."""
        row = await self._db.fetchrow(_IN_FLIGHT_ELSEWHERE, session_id, self.replica_id, self.ttl_seconds)
        return bool(row is not None and row[0])

    async def live_replicas(self) -> list[str]:
        """The ids of the replicas whose heartbeat is fresh, this one included."""
        rows = await self._db.fetch(
            f"SELECT replica_id FROM replicas WHERE heartbeat_at > {_NOW} - $1 ORDER BY replica_id",
            self.ttl_seconds,
        )
        return [str(r[0]) for r in rows]
