"""The retention loop: events, request ids, audit records and callback nonces past their windows
are purged once a minute (on one replica of a fleet: the lease holder)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from service.config import RetentionSettings
from service.domain.ports import Ledger

__all__ = ["RETENTION_INTERVAL_SECONDS", "retention_loop"]

log = logging.getLogger("agentgw")

RETENTION_INTERVAL_SECONDS = 60.0


@contextlib.asynccontextmanager
async def retention_loop(ledger: Ledger, settings: RetentionSettings) -> AsyncIterator[None]:
    """Purge events past retention, request ids past their window and expired callback nonces,
    once a minute."""

    async def loop() -> None:
        while True:
            now = time.time()
            try:
                removed = await ledger.purge_events(now - settings.events_seconds)
                removed += await ledger.purge(
                    idempotency_before=now - settings.idempotency_seconds, sessions_ended_before=0.0
                )
                removed += await ledger.purge_audit(now - settings.audit_seconds)
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
