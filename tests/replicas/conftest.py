"""Fixtures of the fleet runtime tests: a fresh, migrated PostgreSQL database per test, on the run's
one throwaway cluster (``tests.backends``: skipped loudly without the server binaries, failed in CI).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.backends import PgServer


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of an empty, migrated database of its own."""
    url = pg_server.fresh_database()
    yield url
    pg_server.drop(url)
