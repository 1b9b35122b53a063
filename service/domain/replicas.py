"""What one replica knows of the others: whether a PENDING row is another live replica's create.

A PENDING row is a create whose ZEGO call is (or was) in flight. In one process the reaper knows
its own in-flight creates (``SessionService.is_creating``); in a fleet a row may belong to another
replica that is alive and still waiting for ZEGO: resolving it (CREATE_UNCONFIRMED) would fail a
create that is about to succeed. The PostgreSQL registry (``service.store.pg_replicas``) records
which replica inserted each row and every replica's heartbeat; only rows of replicas that stopped
heartbeating (they died, or were drained and left) are the lease holder's to resolve.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Replicas", "SoleReplica"]


class Replicas(Protocol):
    """The fleet as the reaper needs to see it."""

    async def in_flight_elsewhere(self, session_id: str) -> bool:
        """Whether the session's row was created by another replica that is still alive."""


class SoleReplica:
    """No other replica exists (the embedded SQLite ledger: one owner by its file lock)."""

    async def in_flight_elsewhere(self, session_id: str) -> bool:
        """Never."""
        return False
