"""Fixtures of the fleet runtime tests: one throwaway PostgreSQL cluster for the session, a fresh
database per test (``tools.pgcluster``).

Without the server binaries the tests are skipped loudly on a developer's machine and fail in CI,
as the promtool step does.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tools.pgcluster import Cluster, PostgresUnavailable, find_bin_dir, throwaway_cluster

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster shared by this directory's tests."""
    try:
        find_bin_dir()
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "") not in ("", "false"):
            pytest.fail(f"CI needs PostgreSQL: {exc}")
        pytest.skip(f"PostgreSQL is not installed, the fleet runtime tests are SKIPPED: {exc}")
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of an empty database of its own."""
    return pg_cluster.create_database(f"replicas_{os.getpid()}_{next(_databases)}")
