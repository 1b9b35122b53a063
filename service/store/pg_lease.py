"""The fleet's lease on PostgreSQL: a session-level advisory lock held on a dedicated connection.

Why an advisory lock rather than a lease row with an expiry: PostgreSQL itself releases a session
lock the moment the holder's session ends - its process died (the kernel closes the socket), its
connection was terminated, the server restarted - so failover needs no clock agreement between
replicas and no expiry to tune; a contender retrying every ``retry_seconds`` takes over within that
bound. Against a holder that is cut off without its socket closing (a network partition), the
server's TCP keepalives (set on this connection) end the session within about
``KEEPALIVE_BOUND_SECONDS``, and the holder itself gives the lease up as soon as a health check of
its connection fails or takes longer than ``check_seconds``: the two sides cannot both believe they
hold it for longer than one check interval.

The lock lives on its own connection (never a pooled one: a pooled connection serves other
queries and may be closed or recycled by the pool, which would silently drop the lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

import asyncpg

from service.domain.lease import LeaseObserver

__all__ = ["KEEPALIVE_BOUND_SECONDS", "PgAdvisoryLease", "lease_key"]

log = logging.getLogger("agentgw.lease")

_KEEPALIVE = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3"}
KEEPALIVE_BOUND_SECONDS = 11.0
"""How long the server keeps the lock of a holder whose host vanished without closing its socket."""

_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def lease_key(name: str) -> int:
    """The advisory-lock key of a lease (64-bit, stable across releases and replicas)."""
    digest = hashlib.blake2b(f"agentgw.lease:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PgAdvisoryLease:
    """A :class:`service.domain.lease.Lease` backed by ``pg_try_advisory_lock``.

    Use as an async context manager: entering starts the background task that contends for and
    keeps the lock; exiting closes the connection, which releases the lock at once.

    Args:
        url: a ``postgresql://`` URL (the ledger's).
        name: the lease's name (its lock key is derived from it).
        retry_seconds: how often a replica that does not hold the lease tries to take it; this is
            the failover bound once the holder's session has ended.
        check_seconds: how often the holder checks its connection (and the check's timeout).
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "reaper",
        retry_seconds: float = 2.0,
        check_seconds: float = 1.0,
        observer: LeaseObserver | None = None,
    ) -> None:
        if not (retry_seconds > 0 and check_seconds > 0):
            raise ValueError("retry_seconds and check_seconds must be positive")
        self.name = name
        self.key = lease_key(name)
        self._url = url
        self._retry = retry_seconds
        self._check = check_seconds
        self._observer = observer
        self._held = asyncio.Event()
        self._free = asyncio.Event()
        self._free.set()
        self._conn: asyncpg.Connection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.backend_pid: int | None = None
        """The server process of the lease's connection (tests terminate it)."""

    # --- the Lease protocol ---------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """Whether this replica holds the lease (it checked within ``check_seconds``)."""
        return self._held.is_set()

    async def acquired(self) -> None:
        """Return once the lease is held."""
        await self._held.wait()

    async def lost(self) -> None:
        """Return once the lease is not held."""
        await self._free.wait()

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> PgAdvisoryLease:
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    # --- the contender / holder loop ------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._connect()
                if self.held:
                    await asyncio.sleep(self._check)
                    await self._confirm()
                elif await self._try_lock():
                    self._set(True)
                else:
                    await asyncio.sleep(self._retry)
            except asyncio.CancelledError:
                raise
            except _ERRORS as exc:
                if self.held:
                    log.warning("lease %s: connection failed (%s); giving the lease up", self.name, exc)
                self._set(False)
                await self._disconnect()
                await asyncio.sleep(self._retry)

    async def _connect(self) -> None:
        self._conn = await asyncpg.connect(
            self._url,
            timeout=max(self._check, 5.0),
            server_settings={"application_name": f"agentgw-lease-{self.name}", **_KEEPALIVE},
        )
        self.backend_pid = self._conn.get_server_pid()

    async def _try_lock(self) -> bool:
        assert self._conn is not None
        got = await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key, timeout=self._check)
        return bool(got)

    async def _confirm(self) -> None:
        """The lock is still ours while our session lives; ask the server that it does, promptly."""
        assert self._conn is not None
        mine = await self._conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            " AND granted AND ((classid::bigint << 32) | objid::bigint) = $1",
            self.key,
            timeout=self._check,
        )
        if not mine:
            raise asyncpg.InterfaceError("the advisory lock is no longer held by this session")

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=self._check)
            if not conn.is_closed():
                conn.terminate()

    def _set(self, held: bool) -> None:
        if held == self.held:
            return
        if held:
            self._free.clear()
            self._held.set()
            log.info("lease %s acquired", self.name)
        else:
            self._held.clear()
            self._free.set()
        if self._observer is not None:
            try:
                self._observer.lease_held(self.name, held)
            except Exception:
                log.exception("lease observer failed")
