"""The audit trail: one record per mutating RPC, with who did it, to what, and how it ended.

A mutating RPC starts as a :class:`PendingAudit` in :data:`pending_audit` (the RPC wrapper sets it
before the handler runs). The ledger writes it, with code ``PENDING``, inside the first transaction
the call commits, so no change is ever committed without its record; when the call ends
:class:`AuditTrail` fills in the outcome (or, for a call that changed nothing in the ledger, such
as a token minted or a refused request, writes the whole record then). A crash in between leaves
the record with ``PENDING``: the change happened, its answer was never sent. Records hold ids,
names and codes only: never a request body, so never a secret. ``AuditService.ListAuditRecords``
reads them.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from service.auth.principal import Principal

__all__ = [
    "PENDING",
    "AuditFilter",
    "AuditRecord",
    "AuditStore",
    "AuditTrail",
    "NewAuditRecord",
    "PendingAudit",
    "pending_audit",
]

PENDING = "PENDING"
"""The code of a record written with the call's first change, before its outcome is known."""

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


@dataclass
class PendingAudit:
    """The record of the mutating call in progress; ``id`` once the ledger has written it."""

    record: NewAuditRecord
    id: int | None = None
    closed: bool = False
    """The call has ended: a task it spawned that commits later writes no second record."""


pending_audit: contextvars.ContextVar[PendingAudit | None] = contextvars.ContextVar(
    "agentgw_pending_audit", default=None
)
"""Set per audited RPC (each runs in a task of its own, so no reset is needed)."""


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

    async def finish_audit(self, record_id: int, code: str, targets: dict[str, str]) -> None:
        """Set the outcome (and targets known only at the end) of a record written as PENDING."""
        ...


class AuditTrail:
    """Writes audit records; a failed write is logged, never the caller's error."""

    def __init__(self, store: AuditStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def begin(self, principal: Principal, rpc: str, *, request_id: str = "", **targets: str) -> PendingAudit:
        """Start the record of a mutating call: the ledger writes it with the call's first change."""
        pending = PendingAudit(self._entry(principal, rpc, PENDING, request_id, targets))
        pending_audit.set(pending)
        return pending

    async def finish(self, pending: PendingAudit, code: str, **targets: str) -> None:
        """The call ended with ``code``: complete its record, or write it whole if the call changed
        nothing in the ledger. A failed write is logged, never the caller's error."""
        pending.closed = True  # tasks the call spawned share this object: none of them writes it now
        pending_audit.set(None)
        rpc = pending.record.rpc
        clipped = _clip(targets)
        try:
            if pending.id is not None:
                await self._store.finish_audit(pending.id, code, clipped)
            else:
                record = replace(
                    pending.record,
                    code=code,
                    session_id=clipped.get("session_id", pending.record.session_id),
                    agent_id=clipped.get("agent_id", pending.record.agent_id),
                    target=clipped.get("target", pending.record.target),
                )
                await self._store.append_audit(record)
        except Exception:
            log.exception("audit record not written", extra={"rpc": rpc, "code": code})

    async def record(
        self, principal: Principal, rpc: str, code: str, *, request_id: str = "", **targets: str
    ) -> None:
        """Record one whole mutating call and how it ended."""
        await self.finish(
            PendingAudit(self._entry(principal, rpc, code, request_id, targets)), code, **targets
        )

    def _entry(
        self, principal: Principal, rpc: str, code: str, request_id: str, targets: dict[str, str]
    ) -> NewAuditRecord:
        return NewAuditRecord(
            at=self._clock(),
            principal=principal.name,
            role=principal.role.value,
            rpc=rpc,
            request_id=request_id[:64],
            code=code,
            **_clip(targets),
        )

    async def list(self, flt: AuditFilter, limit: int, before_id: int | None) -> list[AuditRecord]:
        """Newest first."""
        return await self._store.list_audit(flt, limit, before_id)


def _clip(targets: dict[str, str]) -> dict[str, str]:
    return {key: value[:128] for key, value in targets.items() if value}
