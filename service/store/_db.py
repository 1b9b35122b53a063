"""The ledger's SQLite connection, run on the event loop, and its background checkpointer.

Every ledger statement runs synchronously on the event loop, and every write is one Python
function run as one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction. Measured against the obvious
alternative, a writer thread (``python -m bench``, scenario 2, and ``python -m bench.micro``):

* a thread hop costs ~80-110 µs of CPU, more than the SQL of a typical ledger transaction;
* worse, a thread that runs SQLite hands the GIL back and forth with a busy event loop, and each
  hand-over can wait out the interpreter's 5 ms switch interval: under load a two-statement
  transaction took tens of milliseconds (EndSession p50 41 ms on a thread, 17 ms on the loop;
  CPU per Create+End 5.8 ms on a thread, 3.9 ms on the loop).

On the loop, a transaction is a few tens of microseconds of CPU plus one ``write()`` of its pages
to the WAL (``synchronous=NORMAL``: no fsync on commit). What could block the loop for longer is
a checkpoint (it copies the WAL into the database and fsyncs), so automatic checkpoints are off on
this connection and a **checkpointer thread** with its own connection runs ``PASSIVE``
checkpoints every second: they never block the writer or readers, and that thread spends its time
inside SQLite with the GIL released.

Consequences: a ledger call cannot be cancelled halfway (it has no await inside); transactions
never interleave (the loop runs one at a time), so no lock is needed; and the database belongs to
this one process: another process may read it (a backup), but a second writer would make this one
wait on the loop, up to ``busy_timeout``.

Long reads (listings, replay pages) are bounded by their callers' page sizes.

One owner: a file ledger is opened only under its exclusive lock (``service.store.lock``), held
until :meth:`Database.close` (or the process's death), so a second process on the same file is
refused before it reads a row. The database is created ``0600`` before SQLite touches it, and
SQLite gives the WAL and SHM files the database's mode.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from service.store import _audit
from service.store.base import StoreError, UnstorableValue
from service.store.lock import FILE_MODE, LedgerLock, create_private

__all__ = ["CHECKPOINT_SECONDS", "Database", "fetch_all", "fetch_one"]

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECKPOINT_SECONDS = 1.0
"""How often the checkpointer copies the WAL into the database."""

PRAGMAS = (
    # The database is this process's; a wait happens only if another process writes to it, and it
    # would stall the event loop, so it is kept short.
    "PRAGMA busy_timeout=2000",
    # WAL lets readers (a backup) run beside the writer and makes a commit a sequential append.
    "PRAGMA journal_mode=WAL",
    # In WAL mode NORMAL is durable across process crashes (a committed transaction is in the
    # WAL file, which the OS keeps even if we die); only an OS crash or power loss may lose the
    # last commits. That is the failure we care about; FULL would fsync every commit for it.
    "PRAGMA synchronous=NORMAL",
    # Transitions reference their session; per connection, off by default.
    "PRAGMA foreign_keys=ON",
    # Checkpoints fsync: the checkpointer thread runs them, never a commit on the loop.
    "PRAGMA wal_autocheckpoint=0",
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
    # check_same_thread=False: the checkpointer's connection is opened here and used on its thread.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


_UNSTORABLE: tuple[type[Exception], ...] = (OverflowError, UnicodeEncodeError, sqlite3.DataError)
"""What sqlite3 raises binding a value it cannot hold (an int beyond 64 bits, a lone surrogate)."""
_CAUGHT: tuple[type[Exception], ...] = (sqlite3.Error, *_UNSTORABLE)


class Database:
    """One SQLite file: a connection used on the event loop, and a checkpointer thread.

    ``":memory:"`` is a private file in a temporary directory, removed on close: WAL mode and
    the checkpointer need a file (and the code path stays the one production runs).
    """

    def __init__(self, path: pathlib.Path | str, *, checkpoint_seconds: float = CHECKPOINT_SECONDS) -> None:
        self._memory = str(path) == ":memory:"
        self._path = path
        self._checkpoint_seconds = checkpoint_seconds
        self._tempdir: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: _Checkpointer | None = None
        self._lock: LedgerLock | None = None

    @property
    def name(self) -> str:
        """The path as given (for messages)."""
        return str(self._path)

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` has not run."""
        return self._conn is not None

    def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Open the database and run ``prepare`` (the migrations), then start the checkpointer.

        Raises:
            LedgerInUse: another process (or another open ledger here) holds the file's lock.
            StoreError: the file cannot be opened, is not a database, or ``prepare`` failed
                with a sqlite3 error. Other exceptions of ``prepare`` pass through.
        """
        if self._conn is not None:
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
            self._lock = LedgerLock(file)
            self._lock.acquire()
            path = str(file)
        conn: sqlite3.Connection | None = None
        try:
            if not self._memory:
                self._create_private(pathlib.Path(path))
            conn = _connect(path)
            for pragma in PRAGMAS:
                conn.execute(pragma).fetchall()
            mode = fetch_one(conn, "PRAGMA journal_mode")
            if mode is None or str(mode[0]).lower() != "wal":
                log.warning("ledger %s is not in WAL mode (journal_mode=%s)", self.name, mode and mode[0])
            prepare(conn)
            self._checkpointer = _Checkpointer(_connect(path), self._checkpoint_seconds, self.name)
        except BaseException as e:
            if conn is not None:
                conn.close()
            self._remove_tempdir()
            self._release_lock()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"cannot open ledger {self.name}: {e}") from e
            raise
        self._conn = conn
        self._checkpointer.start()

    def close(self) -> None:
        """Stop the checkpointer, optimise, and close (the last close checkpoints the WAL)."""
        conn, self._conn = self._conn, None
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()
        try:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA optimize").fetchall()
                conn.close()
        except sqlite3.Error as e:
            raise StoreError(f"cannot close ledger {self.name}: {e}") from e
        finally:
            self._remove_tempdir()
            self._release_lock()

    def _create_private(self, file: pathlib.Path) -> None:
        try:
            create_private(file)
            mode = file.stat().st_mode & 0o777
        except OSError as e:
            raise StoreError(f"cannot open ledger {self.name}: {e}") from e
        if mode & ~FILE_MODE:
            # An operator's choice (a backup group, say) is kept, but said once.
            log.warning("ledger %s has mode %o; agentgw creates it %o", self.name, mode, FILE_MODE)

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _remove_tempdir(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("ledger is not open")
        return self._conn

    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` as one ``BEGIN IMMEDIATE`` transaction: committed when it returns, rolled
        back when it raises. sqlite3 errors become :class:`StoreError` (original as
        ``__cause__``), a value SQLite cannot hold :class:`UnstorableValue`; other exceptions pass
        through."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(conn)
            _audit.write_pending(conn)
            conn.execute("COMMIT")
            return result
        except _CAUGHT as e:
            _rollback(conn)
            raise _store_error(e, "ledger transaction failed") from e
        except BaseException:
            _rollback(conn)
            raise

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` outside a transaction: reads, or one statement (in autocommit mode a single
        statement is its own atomic transaction)."""
        conn = self._connection()
        try:
            return fn(conn)
        except _CAUGHT as e:
            raise _store_error(e, "ledger statement failed") from e

    def checkpoint_now(self) -> None:
        """Ask the checkpointer for a checkpoint without waiting for its next tick (for tests)."""
        if self._checkpointer is not None:
            self._checkpointer.nudge()

    @property
    def checkpoints(self) -> int:
        """Checkpoints the checkpointer has run."""
        return 0 if self._checkpointer is None else self._checkpointer.done


class _Checkpointer:
    """A thread that runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection."""

    def __init__(self, conn: sqlite3.Connection, every: float, name: str) -> None:
        self._conn = conn
        self._every = every
        self._name = name
        self._wake = threading.Event()
        self._stopping = False
        self.done = 0
        self._thread = threading.Thread(target=self._run, name="agentgw-ledger-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def nudge(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wake.wait(self._every)
                self._wake.clear()
                if self._stopping:
                    break
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.done += 1
                except sqlite3.Error as e:  # e.g. busy: the next tick tries again
                    log.warning("ledger %s checkpoint failed: %s", self._name, e)
        finally:
            self._conn.close()


def _store_error(e: BaseException, what: str) -> StoreError:
    check = isinstance(e, sqlite3.IntegrityError) and e.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_CHECK
    if check or isinstance(e, _UNSTORABLE):
        return UnstorableValue(f"ledger cannot store a value: {e}")
    return StoreError(f"{what}: {e}")


def _rollback(conn: sqlite3.Connection) -> None:
    # Best effort: the original error matters more, and a failed COMMIT may already have ended
    # the transaction ("no transaction is active").
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as e:
        log.debug("rollback failed: %s", e)
