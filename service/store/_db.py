"""The ledger's two SQLite connections and where each runs.

* **The writer** lives on one dedicated thread. Every write is one Python function that runs a
  whole ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction there, so a transaction costs one thread
  hop however many statements it holds (a hop, ~80 µs of CPU here, costs ten times the SQL of a
  typical ledger statement). One thread also serialises the transactions: no lock is needed, and
  no other statement can interleave with a transaction.
* **The reader** runs small, indexed reads (a session by id, an event-exists check) directly on
  the event loop, where they take microseconds instead of a hop. WAL mode lets it read beside the
  writer without waiting: it never sees an uncommitted write, and it sees every commit whose
  ``await`` has returned. Reads that can be long (listings, replay pages, scans) run on the writer
  thread instead, so they never stall the loop.

aiosqlite (which this replaces) hops once per statement and has no way to run a function on its
thread, which is why the ledger owns its thread here.

A caller cancelled while its transaction runs does not stop it: the function runs to its commit or
rollback, and the caller must treat the outcome as unknown (as with any remote commit).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import pathlib
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from service.store.base import StoreError

__all__ = ["Database", "fetch_all", "fetch_one"]

log = logging.getLogger(__name__)

T = TypeVar("T")

WRITER_PRAGMAS = (
    # Wait for a lock held by another process (a backup tool, sqlite3 shell) instead of failing.
    "PRAGMA busy_timeout=5000",
    # WAL lets readers run beside the writer and makes a commit a single sequential append.
    "PRAGMA journal_mode=WAL",
    # In WAL mode NORMAL is durable across process crashes (a committed transaction is in the
    # WAL file, which the OS keeps even if we die); only an OS crash or power loss may lose the
    # last commits. That is the failure we care about; FULL would fsync every commit for it.
    "PRAGMA synchronous=NORMAL",
    # Transitions reference their session; per connection, off by default.
    "PRAGMA foreign_keys=ON",
)
READER_PRAGMAS = (
    # The reader runs on the event loop: it must never wait long. In WAL mode a reader only
    # waits in rare moments (another process recovering the WAL index), so a short wait is enough.
    "PRAGMA busy_timeout=250",
    # Belt and braces: nothing on the loop may write.
    "PRAGMA query_only=ON",
)


def fetch_one(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
    """The first row of a statement (the cursor is always exhausted, so no read stays open)."""
    rows: list[sqlite3.Row] = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None


def fetch_all(
    conn: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()
) -> list[sqlite3.Row]:
    """Every row of a statement."""
    rows: list[sqlite3.Row] = conn.execute(sql, params).fetchall()
    return rows


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: sqlite3 must not open transactions behind our back.
    # check_same_thread=False: each connection is used by one thread at a time by construction
    # (the writer only on its thread; the reader only on the loop), but close() may run elsewhere.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


class Database:
    """A writer thread and an on-loop reader over one SQLite file.

    ``":memory:"`` is a private file in a temporary directory, removed on close: the reader needs
    a second connection to the same database, which a true in-memory database cannot give
    without shared-cache mode (whose table locks would make the reader wait).
    """

    def __init__(self, path: pathlib.Path | str) -> None:
        self._memory = str(path) == ":memory:"
        self._path = path
        self._tempdir: str | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None

    @property
    def name(self) -> str:
        """The path as given (for messages)."""
        return str(self._path)

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` has not run."""
        return self._reader is not None

    async def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Open both connections; ``prepare`` (the migrations) runs first on the writer thread.

        Raises:
            StoreError: the file cannot be opened, is not a database, or ``prepare`` failed
                with a sqlite3 error. Other exceptions of ``prepare`` pass through.
        """
        if self._reader is not None:
            return
        if self._memory:
            self._tempdir = tempfile.mkdtemp(prefix="agentgw-ledger-")
            path = str(pathlib.Path(self._tempdir) / "ledger.db")
        else:
            file = pathlib.Path(self._path)
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot open ledger {self.name}: {e}") from e
            path = str(file)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="agentgw-ledger")
        try:
            self._writer = await self._on_thread(self._open_writer, path, prepare)
            self._reader = _connect(path)
            for pragma in READER_PRAGMAS:
                self._reader.execute(pragma).fetchall()
        except BaseException as e:
            await self._shutdown()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"cannot open ledger {self.name}: {e}") from e
            raise

    def _open_writer(self, path: str, prepare: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
        conn = _connect(path)
        try:
            for pragma in WRITER_PRAGMAS:
                conn.execute(pragma).fetchall()
            mode = fetch_one(conn, "PRAGMA journal_mode")
            if mode is None or str(mode[0]).lower() != "wal":
                log.warning("ledger %s is not in WAL mode (journal_mode=%s)", self.name, mode and mode[0])
            prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Wait for queued work, optimise, close both connections (the last close checkpoints)."""
        if self._reader is None and self._executor is None:
            return
        await self._shutdown()

    async def _shutdown(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        writer, self._writer = self._writer, None
        error: sqlite3.Error | None = None
        if writer is not None:
            try:
                await self._on_thread(_close_writer, writer)
            except sqlite3.Error as e:
                error = e
        executor, self._executor = self._executor, None
        if executor is not None:
            # Queued work finishes first; waiting happens off the loop.
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
        if error is not None:
            raise StoreError(f"cannot close ledger {self.name}: {error}") from error

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError("ledger is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _writer_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            raise StoreError("ledger is not open")
        return self._writer

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` as one ``BEGIN IMMEDIATE`` transaction on the writer thread.

        Committed when ``fn`` returns, rolled back when it raises. sqlite3 errors become
        :class:`StoreError` (original as ``__cause__``); other exceptions pass through.
        """
        return await self._on_thread(self._transaction, fn)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._writer_conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(conn)
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as e:
            _rollback(conn)
            raise StoreError(f"ledger transaction failed: {e}") from e
        except BaseException:
            _rollback(conn)
            raise

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread outside a transaction: long reads, or one statement
        (in autocommit mode a single statement is its own atomic transaction)."""
        return await self._on_thread(self._plain, fn)

    def _plain(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._writer_conn())
        except sqlite3.Error as e:
            raise StoreError(f"ledger read failed: {e}") from e

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a short read on the event loop's own connection, now."""
        if self._reader is None:
            raise StoreError("ledger is not open")
        try:
            return fn(self._reader)
        except sqlite3.Error as e:
            raise StoreError(f"ledger read failed: {e}") from e


def _close_writer(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA optimize").fetchall()
    conn.close()


def _rollback(conn: sqlite3.Connection) -> None:
    # Best effort: the original error matters more, and a failed COMMIT may already have ended
    # the transaction ("no transaction is active").
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as e:
        log.debug("rollback failed: %s", e)
