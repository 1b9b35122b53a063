"""The ledger's storage interface.

The domain talks to this protocol only, so a shared database can replace the embedded SQLite
store later without touching domain code. Every method is atomic on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from service.domain.audit import AuditFilter, AuditRecord, NewAuditRecord
from service.domain.events import Event, EventFilter, EventType, NewEvent
from service.domain.model import (
    IdempotencyRecord,
    NewSession,
    SessionFilter,
    SessionKind,
    SessionRecord,
    SessionState,
    Transition,
    TurnStats,
)
from service.errors import Unavailable

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


class StoreError(Exception):
    """The store could not complete an operation (I/O error, corrupt file, ...)."""


class StoreUnavailable(StoreError, Unavailable):
    """The store's server cannot be reached right now (connection lost or refused, a restart or a
    failover, a statement timeout): retry later. An :class:`~service.errors.Unavailable` too, so
    the API answers UNAVAILABLE with RetryInfo rather than INTERNAL."""

    def __init__(self, message: str, retry_after_seconds: float = 1.0) -> None:
        Unavailable.__init__(self, "STORE_UNAVAILABLE", message, retry_after_seconds)


class UnstorableValue(StoreError):
    """A value the store cannot hold (an integer beyond 64 bits, text that is not Unicode, JSON that
    fails a CHECK): the input is at fault, so retrying it cannot help."""


class DuplicateEvent(StoreError):
    """The event (same instance and ZEGO Sequence) is already stored; nothing was changed."""


class TransitionConflict(StoreError):
    """The session was not in one of the expected states; ``current`` is what it is now."""

    def __init__(self, current: SessionRecord | None) -> None:
        super().__init__("session is not in an expected state")
        self.current = current


@dataclass(frozen=True)
class Capacity:
    """Slots of one pool, as the ledger sees them."""

    pool: str
    limit: int
    in_use: int
    """Slots held: every non-terminal session, plus the ``suspect`` ones."""
    pending: int
    """Of in_use, those still PENDING or STARTING."""
    suspect: int = 0
    """Of in_use, ended sessions flagged ``possible_leak``: their instance may still run at ZEGO,
    so the slot stays held until ZEGO confirms it gone."""


@dataclass(frozen=True)
class ReserveOutcome:
    """What ``reserve_session`` did.

    Exactly one of the three holds: ``created`` (a new PENDING row), ``existing`` (the request_id
    was seen before: the original row, whatever its body), or ``rejected`` (no slot free).
    """

    session: SessionRecord | None
    created: bool
    capacity: Capacity
    owner_in_use: int = 0
    """With a quota: the owner's slots of the pool when it was refused."""
    over_quota: bool = False
    """Refused by the owner's quota rather than by the pool's limit."""

    @property
    def rejected(self) -> bool:
        """No slot was free, and the request_id was new."""
        return self.session is None


class Ledger(Protocol):
    """Durable inventory of sessions, their transitions, and idempotency keys."""

    async def open(self) -> None:
        """Open (creating and migrating if needed) the store."""

    async def close(self) -> None:
        """Flush and close."""

    async def reserve_session(
        self, new: NewSession, limit: int, owner_limit: int | None = None
    ) -> ReserveOutcome:
        """Atomically: return the existing row if ``new.request_id`` is known; otherwise insert a
        PENDING row if fewer than ``limit`` sessions of ``new.kind.pool`` hold a slot."""

    async def transition(
        self,
        session_id: str,
        to_state: SessionState,
        *,
        expected: frozenset[SessionState],
        at: float,
        cause: str,
        detail: str = "",
        updates: Mapping[str, Any] | None = None,
    ) -> SessionRecord:
        """Atomically move a session from one of ``expected`` to ``to_state``, apply ``updates``
        (SessionRecord field names), bump its version and record the transition.

        Raises:
            TransitionConflict: the session is missing or not in an expected state.
        """

    async def start_session(
        self, session_id: str, *, at: float, instance_id: str, updates: Mapping[str, Any] | None = None
    ) -> tuple[SessionRecord, bool]:
        """PENDING -> STARTING with ZEGO's instance id, in one transaction that also gives the
        session the events logged for that instance before it was known (callbacks can beat
        ZEGO's answer). Returns the record and whether an AgentInstanceCreated was among them.

        Raises:
            TransitionConflict: the session is missing or not PENDING.
        """

    async def transition_with_event(
        self,
        session_id: str,
        to_state: SessionState,
        *,
        expected: frozenset[SessionState],
        at: float,
        cause: str,
        event: NewEvent,
        detail: str = "",
        updates: Mapping[str, Any] | None = None,
    ) -> tuple[SessionRecord, Event]:
        """``transition`` plus appending ``event``, atomically."""

    async def update_session(self, session_id: str, updates: Mapping[str, Any], at: float) -> SessionRecord:
        """Change fields without a state change (e.g. possible_leak). Raises TransitionConflict if missing."""

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """One session by id."""

    async def find_by_instance_id(self, instance_id: str) -> SessionRecord | None:
        """The session of a ZEGO AgentInstanceId."""

    async def find_by_agent_user(self, room_id: str, agent_user_id: str) -> SessionRecord | None:
        """The newest session with these generated ids (used to match callbacks to PENDING rows)."""

    async def list_sessions(
        self, flt: SessionFilter, limit: int, after: tuple[float, str] | None
    ) -> list[SessionRecord]:
        """Newest first; ``after`` is the (created_at, session_id) of the last row of the previous page."""

    async def sessions_in_states(self, states: frozenset[SessionState]) -> list[SessionRecord]:
        """Every session in one of these states, oldest first."""

    async def transitions(self, session_id: str) -> list[Transition]:
        """A session's recorded transitions, oldest first."""

    async def capacity(self, pool: str, limit: int) -> Capacity:
        """Current use of one pool."""

    async def count_by_kind_state(self) -> dict[tuple[SessionKind, SessionState], int]:
        """Sessions per (kind, state), for gauges."""

    async def get_idempotent(self, method: str, request_id: str) -> IdempotencyRecord | None:
        """A stored result of a mutating call."""

    async def put_idempotent(self, record: IdempotencyRecord) -> IdempotencyRecord:
        """Store a result; if one is already stored for (method, request_id), keep and return it."""

    async def purge(self, *, idempotency_before: float, sessions_ended_before: float) -> int:
        """Drop idempotency keys and terminal sessions older than the cut-offs; returns rows removed."""

    async def append_event(self, event: NewEvent) -> Event | None:
        """Log one event with the next cursor; None when its (instance, Sequence) is already logged."""

    async def append_events(self, events: Sequence[NewEvent]) -> list[Event | None]:
        """``append_event`` for each, in order, in one transaction (all are stored, or none)."""

    async def events_after(self, after: int, limit: int, flt: EventFilter) -> list[Event]:
        """Delivered events with cursor > ``after`` matching ``flt``, oldest first."""

    async def event_bounds(self) -> tuple[int, int]:
        """(purged_through, head) of the event log."""

    async def has_event(self, instance_id: str, event_type: EventType) -> bool:
        """Whether an event of this type was logged for the instance."""

    async def record_exception(
        self, session_id: str, code: int, message: str, at: float
    ) -> SessionRecord | None:
        """Count an Exception callback on the session."""

    async def record_turn(
        self,
        session_id: str,
        *,
        round_: int | None,
        trigger: str,
        outcome: str,
        latency_ms: float | None,
        budget_exceeded: bool,
        at: float,
    ) -> None:
        """Keep one measured ("spoken") or "abandoned" turn of a session."""

    async def session_view(self, session_id: str) -> tuple[SessionRecord, list[Transition], TurnStats] | None:
        """A session, its transitions and its turn statistics, read together."""

    async def possible_leaks(self) -> list[SessionRecord]:
        """Ended or failed sessions still flagged ``possible_leak``, oldest end first."""

    async def leak_counts(self, given_up_before: float) -> dict[SessionKind, tuple[int, int]]:
        """Per kind: (possible leaks, those of them that ended before ``given_up_before``)."""

    async def instance_ids_seen(self, session_id: str) -> list[str]:
        """ZEGO instance ids that callbacks matched to the session, first logged first."""

    async def retry_session(
        self, failed_session_id: str, new: NewSession, limit: int, owner_limit: int | None = None
    ) -> ReserveOutcome:
        """Move ``new.request_id`` from a FAILED session to a new PENDING row if a slot is free."""

    async def purge_events(self, received_before: float) -> int:
        """Drop events received before the cut-off; returns how many."""

    # -- identities (agent owners, per-owner usage, audit) -----------------------------------------

    async def put_agent_owner(self, agent_id: str, owner: str, at: float) -> None:
        """Record who registered ``agent_id`` (the first registration wins)."""

    async def agent_owner(self, agent_id: str) -> str | None:
        """Who registered ``agent_id`` through the gateway; None if unknown."""

    async def delete_agent_owner(self, agent_id: str) -> None:
        """Forget the owner of a deleted agent."""

    async def usage_by_owner(self) -> dict[str, dict[str, int]]:
        """Slots in use per owner and pool."""

    async def owns_live_session(self, owner: str, user_id: str, room_id: str | None) -> bool:
        """Whether ``owner`` has a session not yet ended for ``user_id`` (in ``room_id``, if given)."""

    async def append_audit(self, record: NewAuditRecord) -> None:
        """Store one audit record."""

    async def list_audit(self, flt: AuditFilter, limit: int, before_id: int | None) -> list[AuditRecord]:
        """Audit records, newest first, keyset-paged by id."""

    async def purge_audit(self, before: float) -> int:
        """Delete audit records older than ``before``."""

    async def finish_audit(self, record_id: int, code: str, targets: dict[str, str]) -> None:
        """Set the outcome (and late-known targets) of an audit record written as PENDING."""

    async def remember_callbacks(self, pairs: Sequence[tuple[str, str, str, float]]) -> list[str]:
        """For each (nonce, signature, body digest, expires_at), in one transaction: record the
        pair unless a live record of it exists; return the digests on record (another digest than
        the one given means a replay)."""

    async def purge_callback_nonces(self, now: float) -> int:
        """Drop (Nonce, Signature) records that expired by ``now``; returns how many."""
