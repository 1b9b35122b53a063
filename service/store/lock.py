"""One ledger, one owner: an exclusive lock on a lock file beside the SQLite file.

A second gateway on the same ledger would reconcile it at start-up and end the first one's live
sessions, and the two would race for every capacity slot. Until a fleet mode shares a ledger on
purpose, the process that opens the ledger takes ``flock(LOCK_EX | LOCK_NB)`` on
``<ledger>.lock`` and keeps it for its life; a second process (or a second open in the same
process) is refused with :class:`LedgerInUse`, which names the holder's pid.

Why a lock file and not the database itself: SQLite's own locks are per transaction, and a
reader (a backup, the ``sqlite3`` shell) must stay welcome. Why ``flock``: the lock belongs to
the open file, so it goes when the file is closed or the process dies in any way (SIGKILL
included, nothing to clean up), and closing some *other* descriptor of the file does not drop it
(a POSIX ``fcntl``/``lockf`` record lock would). The lock file is never unlinked: removing it
while a starting process has it open would let two processes lock two different files.

``flock`` is honoured between processes on one host; on NFS, Linux emulates it with record
locks. Keep the ledger on a local disk.

The lock file, like the ledger, is created ``0600``: it holds only a pid, but the directory's
files belong to the gateway's user.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pathlib

from service.store.base import StoreError

__all__ = ["FILE_MODE", "LedgerInUse", "LedgerLock", "create_private", "lock_path_for"]

FILE_MODE = 0o600
"""Mode of the ledger, its WAL and SHM files (SQLite copies the database's) and the lock file."""


class LedgerInUse(StoreError):
    """Another process (or another open ledger in this one) holds the ledger's lock."""

    def __init__(self, ledger: str, lock_path: str, holder_pid: int | None) -> None:
        holder = f"pid {holder_pid}" if holder_pid is not None else "an unknown pid"
        super().__init__(
            f"ledger {ledger} is in use by another agentgw process ({holder}, lock {lock_path}); "
            "one ledger has one owner: stop that process, or give this one its own AGENTGW_DB_PATH"
        )
        self.ledger = ledger
        self.lock_path = lock_path
        self.holder_pid = holder_pid


def lock_path_for(ledger: pathlib.Path | str) -> pathlib.Path:
    """The lock file of a ledger: ``<ledger>.lock`` beside it."""
    path = pathlib.Path(ledger)
    return path.with_name(path.name + ".lock")


def create_private(path: pathlib.Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (an existing file is left alone).

    SQLite creates the WAL and SHM files with the database file's permissions, so creating the
    database this way before SQLite does makes all three private.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))


class LedgerLock:
    """The exclusive lock of one ledger, held from :meth:`acquire` until :meth:`release`."""

    def __init__(self, ledger: pathlib.Path | str) -> None:
        self._ledger = str(ledger)
        self.path = lock_path_for(ledger)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting and write our pid into the lock file.

        Raises:
            LedgerInUse: someone else holds it.
            StoreError: the lock file cannot be created or locked for another reason.
        """
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as e:
            raise StoreError(f"cannot open the ledger's lock file {self.path}: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_pid(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LedgerInUse(self._ledger, str(self.path), holder) from None
            raise StoreError(f"cannot lock the ledger's lock file {self.path}: {e}") from e
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # the pid is only for the loser's message; the lock is what counts
            pass
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the file drops it; the file stays, see the module docstring)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    @staticmethod
    def probe(ledger: pathlib.Path | str) -> None:
        """Raise :class:`LedgerInUse` now if another owner holds ``ledger``'s lock; else do nothing.

        For an early, clean refusal before anything else starts; the lock the ledger takes when it
        opens is what guarantees a single owner (a start-up race between two probes ends there).
        A missing ledger directory means nobody holds it.
        """
        if not lock_path_for(ledger).parent.is_dir():
            return
        lock = LedgerLock(ledger)
        lock.acquire()
        lock.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
