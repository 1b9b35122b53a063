"""Leadership for the fleet's singleton duties: one replica at a time reconciles, reaps, retries
leaks and purges.

A :class:`Lease` is held by at most one replica of a fleet. The PostgreSQL one
(``service.store.pg_lease``) is a session-level advisory lock on a dedicated connection: the
database releases it the moment the holder's connection ends (the process died, the connection
was killed), and a contender retrying every ``retry_seconds`` takes it over within that bound. With
the embedded SQLite ledger there is no fleet (one process owns the file, by its lock), so
:class:`AlwaysHeld` is the lease.

:func:`while_held` runs a duty (an async context manager factory, e.g. the reaper) only while
the lease is held: it enters it on acquisition, exits it when the lease is lost, and enters it again
on the next acquisition, so a replica that takes over first reconciles, then reaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

__all__ = ["AlwaysHeld", "Lease", "LeaseObserver", "while_held"]

log = logging.getLogger("agentgw.lease")


class Lease(Protocol):
    """A named lease that at most one replica holds; tells its holder when it is lost."""

    name: str

    @property
    def held(self) -> bool:
        """Whether this replica holds the lease now (as far as it knows)."""

    async def acquired(self) -> None:
        """Return once the lease is held (at once if it is)."""

    async def lost(self) -> None:
        """Return once the lease is not held (at once if it is not)."""


class LeaseObserver(Protocol):
    """Metrics hook (``service.metrics.Metrics`` satisfies it)."""

    def lease_held(self, lease: str, held: bool) -> None:
        """This replica acquired (True) or lost (False) the lease."""


class AlwaysHeld:
    """The lease of a single-process gateway: the ledger's file lock already makes it the only one."""

    def __init__(self, name: str = "reaper") -> None:
        self.name = name

    @property
    def held(self) -> bool:
        """Always."""
        return True

    async def acquired(self) -> None:
        """Held from the start."""
        return None

    async def lost(self) -> None:
        """Never lost: waits forever (until cancelled)."""
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def while_held(
    lease: Lease,
    duty: Callable[[], AbstractAsyncContextManager[object]],
    *,
    tried: asyncio.Event | None = None,
) -> AsyncIterator[None]:
    """Run ``duty()`` whenever ``lease`` is held, as a background task, until the block exits.

    A duty that fails on entry is logged and tried again after a pause while the lease is still
    held, so one bad pass cannot stop the replica from leading. ``tried`` is set once the first
    entry has finished (succeeded or failed): a replica that wins the lease at start-up waits for
    it, so it reconciles before it serves, as a single process does.
    """

    async def supervise() -> None:
        while True:
            await lease.acquired()
            log.info("lease %s held: starting its duties", lease.name)
            try:
                async with duty():
                    if tried is not None:
                        tried.set()
                    await lease.lost()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a duty of lease %s failed; trying again", lease.name)
                if tried is not None:
                    tried.set()
                await asyncio.sleep(1.0)
                continue
            log.warning("lease %s lost: its duties stopped", lease.name)

    task = asyncio.create_task(supervise(), name=f"lease-{lease.name}-duties")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
