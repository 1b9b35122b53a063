"""The benchmark scenarios' code, at tiny sizes; PostgreSQL as in the fleet tests."""

from tests.fleet.conftest import database_url  # noqa: F401  (the PostgreSQL-only fixture)
