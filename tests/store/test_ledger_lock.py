"""One ledger, one owner: the exclusive lock beside the SQLite file, and private file modes."""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import stat
import sys
import textwrap

import pytest

from service.store.base import StoreError
from service.store.lock import LedgerInUse, LedgerLock, lock_path_for
from service.store.sqlite import SqliteLedger
from tests.store.test_sqlite_ledger import new, reserve


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_second_open_of_the_same_file_is_refused_and_names_the_holder(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "ledger.db"
    first = SqliteLedger(db)
    await first.open()
    try:
        with pytest.raises(LedgerInUse) as info:
            await SqliteLedger(db).open()
        assert info.value.holder_pid == os.getpid()
        assert str(db) in str(info.value) and "AGENTGW_DB_PATH" in str(info.value)
        assert isinstance(info.value, StoreError)  # callers that handle StoreError handle this too
        # The refused open touched nothing: the owner goes on writing.
        created = await reserve(first, new(1))
    finally:
        await first.close()
    second = SqliteLedger(db)
    await second.open()  # closing released the lock
    try:
        assert await second.get_session(created.session_id) == created
    finally:
        await second.close()


async def test_the_lock_goes_with_a_process_killed_by_sigkill(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "ledger.db"
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        from service.store.sqlite import SqliteLedger

        async def main() -> None:
            await SqliteLedger({str(db)!r}).open()
            print("open", flush=True)
            sys.stdin.readline()
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        cwd=pathlib.Path(__file__).parents[2],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"open\n"
        with pytest.raises(LedgerInUse) as info:
            await SqliteLedger(db).open()
        assert info.value.holder_pid == child.pid
        child.stdin.write(b"die\n")
        await child.stdin.drain()
        assert await asyncio.wait_for(child.wait(), 30) == -9
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    after = SqliteLedger(db)
    await after.open()  # nothing to clean up after a SIGKILL
    await after.close()


async def test_ledger_wal_shm_and_lock_files_are_created_0600(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "sub" / "ledger.db"
    old = os.umask(0o022)  # a typical umask would give 0644
    try:
        ledger = SqliteLedger(db)
        await ledger.open()
    finally:
        os.umask(old)
    try:
        await reserve(ledger, new(1))  # a write, so the WAL and SHM exist
        wal, shm = db.with_name("ledger.db-wal"), db.with_name("ledger.db-shm")
        assert wal.exists() and shm.exists()
        assert {p.name: mode(p) for p in (db, wal, shm, lock_path_for(db))} == {
            "ledger.db": 0o600,
            "ledger.db-wal": 0o600,
            "ledger.db-shm": 0o600,
            "ledger.db.lock": 0o600,
        }
        assert lock_path_for(db).read_text() == f"{os.getpid()}\n"
    finally:
        await ledger.close()
    assert lock_path_for(db).read_text() == ""  # released: no stale pid to mislead anyone


async def test_an_existing_ledger_with_a_wider_mode_is_kept_and_warned_about(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "ledger.db"
    ledger = SqliteLedger(db)
    await ledger.open()
    await ledger.close()
    db.chmod(0o640)  # an operator's choice, e.g. for a backup group
    ledger = SqliteLedger(db)
    with caplog.at_level(logging.WARNING, logger="service.store._db"):
        await ledger.open()
    await ledger.close()
    assert mode(db) == 0o640
    assert any("mode 640" in r.getMessage() for r in caplog.records)


async def test_a_failed_open_releases_the_lock(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "garbage.db"
    db.write_bytes(b"not a database" * 200)
    with pytest.raises(StoreError):
        await SqliteLedger(db).open()
    lock = LedgerLock(db)
    lock.acquire()  # nobody holds it after the failure
    lock.release()


def test_probe_refuses_while_held_and_passes_when_free(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "ledger.db"
    LedgerLock.probe(tmp_path / "missing-dir" / "ledger.db")  # no directory: nobody holds it
    LedgerLock.probe(db)
    held = LedgerLock(db)
    held.acquire()
    try:
        with pytest.raises(LedgerInUse):
            LedgerLock.probe(db)
        held.acquire()  # idempotent for its holder
        assert held.held
    finally:
        held.release()
    LedgerLock.probe(db)
    assert not held.held
