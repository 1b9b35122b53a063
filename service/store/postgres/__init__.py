"""The PostgreSQL ledger: one database shared by a fleet of agentgw replicas (``AGENTGW_DATABASE_URL``)."""

from service.store.postgres.db import PoolOptions
from service.store.postgres.ledger import PostgresLedger

__all__ = ["PoolOptions", "PostgresLedger"]
