"""What the reaper reports: its metrics hooks and the per-pass and start-up reports."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from service.domain.model import SessionKind

__all__ = ["NullReaperObserver", "Outcome", "PassReport", "ReaperObserver", "ReconcileReport"]


class ReaperObserver(Protocol):
    """Metrics hooks; the metrics module implements them so this module never imports prometheus."""

    def possible_leak(self, kind: SessionKind) -> None:
        """A row was failed with ``possible_leak``: an instance may run upstream with an unknown id."""


class NullReaperObserver:
    """The default observer: records nothing."""

    def possible_leak(self, kind: SessionKind) -> None:
        """Ignore."""


class Outcome(enum.Enum):
    """What happened to one row; the value names the report field it counts towards."""

    UNTOUCHED = "untouched"
    MAX_DURATION = "max_duration"
    CREATE_UNCONFIRMED = "create_unconfirmed"
    ACTIVATED = "activated"
    ALIVE = "alive"
    ENDED = "ended"
    UNVERIFIED = "unverified"
    ERRORS = "errors"


@dataclass(frozen=True)
class PassReport:
    """What one periodic pass did, in rows.

    ``examined``: non-terminal rows read; ``max_duration``: ended (or their end started) for
    exceeding max_duration; ``create_unconfirmed``: PENDING rows failed with possible_leak;
    ``activated``: STARTING rows ZEGO confirmed, now ACTIVE; ``alive``: checked upstream and left as
    they are (a graceful delete under way); ``ended``: now ENDED, gone upstream or deleted again;
    ``unverified``: ZEGO could not be asked or failed, retried next pass; ``errors``: unexpected
    failures (store errors, bugs), logged and retried next pass; ``leaks_resolved``: possible
    leaks ZEGO confirmed gone; ``leaked``: possible leaks past the give-up time.
    """

    examined: int = 0
    max_duration: int = 0
    create_unconfirmed: int = 0
    activated: int = 0
    alive: int = 0
    ended: int = 0
    unverified: int = 0
    errors: int = 0
    leaks_resolved: int = 0
    leaked: int = 0


@dataclass(frozen=True)
class ReconcileReport:
    """What start-up reconciliation did, in rows.

    ``examined``: non-terminal rows found; ``create_unconfirmed``: PENDING rows failed with
    possible_leak; ``activated``: STARTING rows ZEGO confirmed, now ACTIVE; ``alive``: confirmed alive
    and left as they are (ACTIVE, or ENDING with a graceful delete under way); ``ended``: now ENDED,
    gone upstream or an ENDING row whose delete was retried; ``unverified``: ZEGO could not be asked,
    left for the periodic pass; ``errors``: unexpected failures, left for the periodic pass;
    ``untouched``: PENDING rows still being created by this process (only if called after serving
    began) or rows changed concurrently; ``leaks_resolved`` and ``leaked`` as in PassReport.
    """

    examined: int = 0
    create_unconfirmed: int = 0
    activated: int = 0
    alive: int = 0
    ended: int = 0
    unverified: int = 0
    errors: int = 0
    untouched: int = 0
    leaks_resolved: int = 0
    leaked: int = 0
