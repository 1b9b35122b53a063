"""The PostgreSQL ledger's connection pool, its transactions, and its error mapping.

One ``asyncpg`` pool per ledger (per replica). Every connection starts with the ledger's
``statement_timeout`` and an ``idle_in_transaction_session_timeout``, so neither a runaway query
nor a transaction abandoned by a dead task can hold locks for long.

A write is one :meth:`PgDatabase.transaction`: ``READ COMMITTED``, with whatever lock it needs
taken explicitly by the caller (``pg_advisory_xact_lock`` for admission and the event log,
``SELECT ... FOR UPDATE`` for a session row). A deadlock or serialization failure (PostgreSQL
aborted the transaction; nothing of it committed) is retried a few times.

Failover: when the server restarts, the pool's idle connections die with it; asyncpg notices the
closed socket and the pool opens a new connection on the next acquire. A call that meets the
outage itself fails with :class:`~service.store.base.StoreUnavailable` (UNAVAILABLE with
RetryInfo at the API; a 503 to ZEGO, which retries the callback): whether such a write committed
is unknown, exactly as with any lost reply, and every write of the ledger is safe to retry
(request ids, ZEGO Sequence dedupe, expected-state transitions).

Errors: a value PostgreSQL cannot hold (class 22 data exceptions, a CHECK, an int beyond 64 bits)
is :class:`~service.store.base.UnstorableValue`; a lost or refused connection, a timeout, a server
shutting down is ``StoreUnavailable``; anything else is ``StoreError``. Messages never carry the
database URL.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

from service.domain.audit import PendingAudit
from service.store.base import StoreError, StoreUnavailable, UnstorableValue
from service.store.postgres import audit

__all__ = ["Conn", "PgDatabase", "PoolOptions", "store_error"]

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]
    """A pooled connection, as every ledger function receives it."""
else:
    Conn = Any

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRIES = 5
"""Attempts of a transaction PostgreSQL aborted for a deadlock or serialization failure."""
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.PostgresConnectionError,
    asyncpg.QueryCanceledError,  # statement_timeout, or a cancel by an operator
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.LockNotAvailableError,
    asyncpg.ReadOnlySQLTransactionError,  # a failover not finished: we reached a standby
)
_UNSTORABLE: tuple[type[BaseException], ...] = (
    asyncpg.DataError,  # class 22, and asyncpg's own "invalid input for query argument"
    asyncpg.CheckViolationError,
    OverflowError,
    UnicodeEncodeError,
)


def store_error(e: BaseException, what: str, secret: str = "") -> StoreError:
    """The ledger's error for an exception of the driver (or of encoding a parameter).

    ``secret`` (the URL's password) is blotted out of the message should the driver quote it.
    """
    kind = type(e).__name__
    if isinstance(e, StoreError):
        return e
    text = str(e).replace(secret, "***") if secret else str(e)
    if isinstance(e, _UNSTORABLE):
        return UnstorableValue(f"ledger cannot store a value ({kind}): {text}")
    if isinstance(e, _UNAVAILABLE):
        return StoreUnavailable(f"ledger database unavailable ({kind}): {text}")
    return StoreError(f"{what} ({kind}): {text}")


def _password(url: str) -> str:
    try:
        return urllib.parse.urlsplit(url).password or ""
    except ValueError:
        return ""


_CAUGHT: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *_UNAVAILABLE, *_UNSTORABLE)


class PoolOptions:
    """How the pool connects: sizes and timeouts (see the ``db_*`` settings)."""

    def __init__(
        self,
        *,
        min_size: int = 1,
        max_size: int = 10,
        statement_timeout_seconds: float = 5.0,
        connect_timeout_seconds: float = 5.0,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError("pool sizes must satisfy 0 <= min_size <= max_size, max_size >= 1")
        self.min_size = min_size
        self.max_size = max_size
        self.statement_timeout_seconds = statement_timeout_seconds
        self.connect_timeout_seconds = connect_timeout_seconds

    @property
    def acquire_timeout_seconds(self) -> float:
        """How long a call waits for a free connection of a busy pool before it is UNAVAILABLE."""
        return self.statement_timeout_seconds + self.connect_timeout_seconds

    def server_settings(self) -> dict[str, str]:
        """Session settings every connection starts with."""
        timeout_ms = str(max(1, int(self.statement_timeout_seconds * 1000)))
        return {
            "application_name": "agentgw",
            "statement_timeout": timeout_ms,
            "idle_in_transaction_session_timeout": str(max(1000, int(timeout_ms) * 4)),
        }


class PgDatabase:
    """An asyncpg pool with the ledger's transaction and error rules."""

    def __init__(self, url: str, options: PoolOptions | None = None) -> None:
        self._url = url
        self._secret = _password(url)
        self._options = options or PoolOptions()
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` has not run."""
        return self._pool is not None

    async def open(self, prepare: Callable[[Conn], Awaitable[None]]) -> None:
        """Create the pool and run ``prepare`` (the migrations) on one of its connections.

        Raises:
            StoreUnavailable: the server cannot be reached.
            StoreError: ``prepare`` failed, or the server refused us.
        """
        if self._pool is not None:
            return
        opts = self._options
        try:
            pool = await asyncpg.create_pool(
                self._url,
                min_size=opts.min_size,
                max_size=opts.max_size,
                timeout=opts.connect_timeout_seconds,
                server_settings=opts.server_settings(),
                # A call's own bound is the server's statement_timeout; this is the backstop for
                # a server that stopped answering altogether.
                command_timeout=opts.statement_timeout_seconds + 5.0,
            )
        except _CAUGHT as e:
            raise store_error(e, "cannot open ledger", self._secret) from None
        try:
            async with pool.acquire() as conn:
                await prepare(conn)
        except BaseException as e:
            await pool.close()
            if isinstance(e, _CAUGHT):
                raise store_error(e, "cannot open ledger", self._secret) from e
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool (waits for connections in use to be released, then closes them)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (TimeoutError, asyncpg.PostgresError, OSError):
                pool.terminate()

    def _live_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise StoreError("ledger is not open")
        return self._pool

    async def transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction: committed when it returns, rolled back when it raises.

        ``fn`` runs again (from scratch) if PostgreSQL aborted it for a deadlock or a
        serialization failure. Driver errors become StoreError subclasses; others pass through.
        """
        pool = self._live_pool()
        for attempt in range(1, _RETRIES + 1):
            try:
                return await _attempt(pool, fn, self._options.acquire_timeout_seconds)
            except _RETRYABLE as e:
                if attempt == _RETRIES:
                    raise store_error(e, "ledger transaction failed", self._secret) from e
                log.debug("ledger transaction retried after %s", type(e).__name__)
                await asyncio.sleep(0.005 * attempt)
            except _CAUGHT as e:
                raise store_error(e, "ledger transaction failed", self._secret) from e
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` on a pooled connection outside an explicit transaction (reads, or one
        statement, which is its own transaction)."""
        pool = self._live_pool()
        try:
            async with pool.acquire(timeout=self._options.acquire_timeout_seconds) as conn:
                return await fn(conn)
        except _CAUGHT as e:
            raise store_error(e, "ledger statement failed", self._secret) from e

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Every row of one statement."""
        rows: list[asyncpg.Record] = await self.run(lambda conn: conn.fetch(sql, *args))
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """The first row of one statement, or None."""
        row: asyncpg.Record | None = await self.run(lambda conn: conn.fetchrow(sql, *args))
        return row

    async def execute(self, sql: str, *args: Any) -> str:
        """Run one statement; its status tag (e.g. ``DELETE 3``)."""
        status: str = await self.run(lambda conn: conn.execute(sql, *args))
        return status


async def _attempt(
    pool: asyncpg.Pool[asyncpg.Record], fn: Callable[[Conn], Awaitable[T]], timeout: float
) -> T:
    """One try of a transaction, with the audited call's pending record written inside it."""
    wrote: PendingAudit | None = None
    try:
        async with pool.acquire(timeout=timeout) as conn, conn.transaction():
            result = await fn(conn)
            wrote = await audit.write_pending(conn)
        return result
    except BaseException:
        if wrote is not None:  # its record did not commit: the next change must write it
            wrote.id = None
        raise
