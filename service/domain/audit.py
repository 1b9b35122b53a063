"""The audit trail: one record per mutating RPC, with who did it, to what, and how it ended.

Records are written by :class:`AuditTrail` once the outcome is known (the RPC wrapper calls it
after the handler returns or fails), and read back by ``AuditService.ListAuditRecords``. They hold
ids, names and codes only: never a request body, so never a secret.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from service.auth.principal import Principal

__all__ = ["AuditFilter", "AuditRecord", "AuditStore", "AuditTrail", "NewAuditRecord"]

log = logging.getLogger("agentgw.audit")


@dataclass(frozen=True)
class NewAuditRecord:
    """What happened, before the ledger numbers it."""

    at: float
    principal: str
    role: str
    rpc: str
    """The full method, e.g. ``/agentgw.v1.SessionService/EndSession``."""
    session_id: str = ""
    agent_id: str = ""
    target: str = ""
    """Another target id where the RPC has one (a token's user id)."""
    request_id: str = ""
    code: str = "OK"
    """The gRPC status code name the caller got."""


@dataclass(frozen=True)
class AuditRecord(NewAuditRecord):
    """A stored record; ``id`` orders them and pages ListAuditRecords."""

    id: int = 0


@dataclass(frozen=True)
class AuditFilter:
    """ListAuditRecords filters; empty fields match everything."""

    principal: str = ""
    session_id: str = ""
    since: float | None = None
    until: float | None = None


class AuditStore(Protocol):
    """The ledger's audit table."""

    async def append_audit(self, record: NewAuditRecord) -> None:
        """Store one record."""
        ...

    async def list_audit(self, flt: AuditFilter, limit: int, before_id: int | None) -> list[AuditRecord]:
        """Newest first, keyset-paged by id."""
        ...

    async def purge_audit(self, before: float) -> int:
        """Delete records older than ``before``; how many went."""
        ...


class AuditTrail:
    """Writes audit records; a failed write is logged, never the caller's error."""

    def __init__(self, store: AuditStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def record(
        self,
        principal: Principal,
        rpc: str,
        code: str,
        *,
        session_id: str = "",
        agent_id: str = "",
        target: str = "",
        request_id: str = "",
    ) -> None:
        """Record one mutating call and how it ended."""
        entry = NewAuditRecord(
            at=self._clock(),
            principal=principal.name,
            role=principal.role.value,
            rpc=rpc,
            session_id=session_id[:128],
            agent_id=agent_id[:128],
            target=target[:128],
            request_id=request_id[:64],
            code=code,
        )
        try:
            await self._store.append_audit(entry)
        except Exception:
            log.exception("audit record not written", extra={"rpc": rpc, "code": code})

    async def list(self, flt: AuditFilter, limit: int, before_id: int | None) -> list[AuditRecord]:
        """Newest first."""
        return await self._store.list_audit(flt, limit, before_id)
