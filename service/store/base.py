"""The ledger's storage interface, as the store adapters see it.

The interface and its errors are the domain's (:mod:`service.domain.ports`, :mod:`service.errors`):
``service.store`` implements the port and imports it from there. This module re-exports them so
the store's modules have one short import.
"""

from __future__ import annotations

from service.domain.ports import (
    Capacity,
    DuplicateEvent,
    Ledger,
    ReserveOutcome,
    StoreError,
    TransitionConflict,
    UnstorableValue,
)
from service.errors import StoreUnavailable

__all__ = [
    "Capacity",
    "DuplicateEvent",
    "Ledger",
    "ReserveOutcome",
    "StoreError",
    "StoreUnavailable",
    "TransitionConflict",
    "UnstorableValue",
]
