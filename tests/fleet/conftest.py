"""The multi-process fleet tests: real PostgreSQL, one emulator process, real gateway processes.

Without PostgreSQL's server binaries these tests are skipped loudly on a developer's machine and
fail when ``CI`` is set (``.ci/run`` installs Debian's ``postgresql``), as ``make rules`` does
for promtool.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bench.processes import Processes
from tests.backends import PgServer
from tools.pgcluster import PostgresUnavailable, find_bin_dir


def _in_ci() -> bool:
    return os.environ.get("CI", "") not in ("", "false", "0")


def require_postgres() -> None:
    """Skip (loudly) or, under CI, fail when PostgreSQL's server binaries are missing."""
    try:
        find_bin_dir()
    except PostgresUnavailable as exc:
        message = f"PostgreSQL NOT TESTED: {exc}"
        if _in_ci():
            pytest.fail(f"{message} (CI is set: the fleet tests must run)")
        pytest.skip(message)


@pytest.fixture
def database_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated, empty database on the run's cluster (``tests.backends``), PostgreSQL only
    (the suite-wide fixture of the same name is parametrised over both ledgers)."""
    url = pg_server.fresh_database()
    yield url
    pg_server.drop(url)


@pytest.fixture
async def procs(tmp_path: Path) -> AsyncIterator[Processes]:
    """Child processes of one test, all stopped when it ends."""
    processes = Processes(tmp_path / "procs")
    (tmp_path / "procs").mkdir()
    try:
        yield processes
    finally:
        await processes.close()
