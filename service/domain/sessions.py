"""Sessions: crash-safe, idempotent creation under admission control, ending, and state changes.

Creation (``service.domain.session_create``) reserves a capacity slot and a PENDING row before
ZEGO is called, and records ZEGO's answer; instances that may outlive their rows are chased by
``service.domain.leaks``. Shutting the gateway down never ends a session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from service.auth.principal import current_principal
from service.config import SessionSettings
from service.domain import zego_errors as zx
from service.domain.access import check_may_change, check_session_change, check_session_read, owner_scope
from service.domain.call_control import CallControlMixin
from service.domain.event_log import EventBus, EventLog
from service.domain.events import EventFilter, EventType, NewEvent
from service.domain.leaks import LeakPolicy, LeakTracker
from service.domain.model import (
    SLOT_HOLDING_STATES,
    EndReason,
    SessionFilter,
    SessionRecord,
    SessionState,
    Transition,
    TurnStats,
)
from service.domain.ports import Capacity, Ledger, TransitionConflict
from service.domain.quotas import QuotaPolicy
from service.domain.session_create import CreateMixin, NullSessionObserver, SessionObserver
from service.domain.session_spec import CreateSpec
from service.domain.zego_port import ZegoPort
from service.errors import FailedPrecondition, NotFound, PermissionDenied

__all__ = ["CreateSpec", "SessionService", "end_reason_for_zego_code"]

S = SessionState


def end_reason_for_zego_code(code: int) -> EndReason:
    """AgentInstanceDeleted ``Data.Code`` (spec §7.4) -> why the session ended."""
    if code == 0:
        return EndReason.ENDED_BY_CALLER
    if code == 1202:
        return EndReason.USER_ABSENT
    if code == 1203:
        return EndReason.AGENT_KICKED
    if 1200 <= code < 1300:
        return EndReason.UPSTREAM_RTC_ERROR
    return EndReason.UPSTREAM_DELETED


class SessionService(CreateMixin, CallControlMixin):
    """The ledger-backed session lifecycle over the ZEGO port."""

    def __init__(
        self,
        zego: ZegoPort,
        ledger: Ledger,
        *,
        settings: SessionSettings,
        events: EventLog | None = None,
        observer: SessionObserver | None = None,
        leak_policy: LeakPolicy | None = None,
        quotas: QuotaPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._end_confirm = settings.end_confirm_seconds
        self._quotas = quotas
        self._observer: SessionObserver = observer or NullSessionObserver()
        self._zego = zego
        self._ledger = ledger
        self._events = events if events is not None else EventLog(ledger, EventBus(), clock=clock)
        self._limits = settings.limits
        self._default_max_duration = settings.max_duration_seconds
        self._clock = clock
        # Creates in flight in this process: a concurrent retry of the same request_id waits here.
        self._inflight: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Future[SessionRecord]] = set()
        self.leaks = LeakTracker(self, leak_policy, clock=clock)
        """Retries instances that may still run at ZEGO until ZEGO confirms them gone."""

    @property
    def ledger(self) -> Ledger:
        """The ledger (the reaper and the API read it too)."""
        return self._ledger

    def limit(self, pool: str) -> int:
        """The admission limit of a pool."""
        return self._limits[pool]

    # --- read -------------------------------------------------------------------------------------

    async def get(self, session_id: str) -> SessionRecord:
        """One session the principal may see, or ``NotFound``."""
        record = await self._ledger.get_session(session_id)
        if record is None:
            raise NotFound("session", session_id, "SESSION_NOT_FOUND")
        check_session_read(session_id, record.owner)
        return record

    async def view(self, session_id: str) -> tuple[SessionRecord, list[Transition], TurnStats]:
        """A session with its transitions and turn statistics (one ledger read), or ``NotFound``."""
        found = await self._ledger.session_view(session_id)
        if found is None:
            raise NotFound("session", session_id, "SESSION_NOT_FOUND")
        check_session_read(session_id, found[0].owner)
        return found

    async def transitions(self, session_id: str) -> list[Transition]:
        """A session's recorded transitions."""
        return await self._ledger.transitions(session_id)

    async def list_sessions(
        self, flt: SessionFilter, limit: int, after: tuple[float, str] | None
    ) -> list[SessionRecord]:
        """Newest first, keyset-paged; a caller sees only its own sessions."""
        scope = owner_scope()
        if scope is not None:
            flt = dataclasses.replace(flt, owner=scope)
        return await self._ledger.list_sessions(flt, limit, after)

    async def usage_by_owner(self) -> dict[str, dict[str, int]]:
        """Slots in use per owner and pool: every owner for viewers and admins, else the caller's."""
        usage = await self._ledger.usage_by_owner()
        scope = owner_scope()
        return usage if scope is None else {scope: usage.get(scope, {})}

    def quota_for(self, name: str) -> tuple[int | None, int | None]:
        """A caller's (voice, digital_human) session quotas; None is unlimited."""
        if self._quotas is None:
            return None, None
        quota = self._quotas.for_caller(name)
        return quota.voice, quota.digital_human

    async def authorize_room_token(self, user_id: str, room_id: str | None) -> None:
        """May the principal mint a room token for ``user_id``? Admins always; viewers never;
        callers only for the user of a session they own that has not ended (in ``room_id``, when
        the token carries a room privilege). ``PermissionDenied`` otherwise."""
        principal = current_principal()
        if principal.is_admin:
            return
        check_may_change("mint room tokens")
        if not await self._ledger.owns_live_session(principal.name, user_id, room_id):
            raise PermissionDenied(
                "room tokens are minted only for the user of a session you own that has not ended"
                + (" in that room" if room_id is not None else ""),
                reason="TOKEN_NOT_ALLOWED",
            )

    async def capacity(self) -> list[Capacity]:
        """Use of every pool."""
        return [await self._ledger.capacity(pool, limit) for pool, limit in sorted(self._limits.items())]

    # --- end --------------------------------------------------------------------------------------

    async def end(
        self,
        session_id: str,
        *,
        graceful: bool = False,
        graceful_timeout_seconds: int | None = None,
        timeout: float | None = None,
        reason: EndReason = EndReason.ENDED_BY_CALLER,
        cause: str = "end_session",
    ) -> SessionRecord:
        """Delete the instance. Idempotent: an ended session is returned as it is.

        An ended session still flagged ``possible_leak`` gets one more delete attempt now, even
        past the leak give-up time (an operator's way to settle a leak; nothing happens if no
        instance id is known). A ZEGO failure then propagates, and the leak tracker keeps trying.
        """
        record = await self.get(session_id)
        check_session_change(session_id, record.owner, "end it")
        if record.terminal:
            if record.possible_leak:
                await self.leaks.check(record, timeout=timeout)
                return await self.get(session_id)
            return record
        if record.state is S.PENDING:
            raise FailedPrecondition(
                "SESSION_PENDING", session_id, "the session is still being created; retry in a moment"
            )
        # A retried end (its first answer was lost) finds ZEGO's instance gone: that is our delete.
        already_ending = record.state is S.ENDING
        if not already_ending:
            record = await self._move(record, S.ENDING, cause, updates={"end_reason": reason})
        assert record.instance_id is not None
        try:
            await self._zego.delete_instance(
                record.instance_id,
                graceful=graceful,
                graceful_timeout_seconds=graceful_timeout_seconds,
                timeout=timeout,
            )
        except zx.ZegoInstanceNotFound:
            gone = record.end_reason if already_ending and record.end_reason else EndReason.UPSTREAM_GONE
            return await self.mark_ended(record, gone, cause, "ZEGO no longer knows the instance")
        except zx.ZegoStateConflict as exc:
            if exc.code == zx.GRACEFUL_SHUTDOWN_IN_PROGRESS:  # the end is under way
                return record
            raise
        if graceful:
            # ZEGO destroys it once the agent is idle; the callback or the reaper confirms it.
            return record
        confirmed = await self._await_zego_end(record)
        return confirmed or await self.mark_ended(record, reason, cause)

    async def _await_zego_end(self, record: SessionRecord) -> SessionRecord | None:
        """Give ZEGO's AgentInstanceDeleted a moment to end the session itself.

        Its callback carries ZEGO's LatencyData and code, so the session's one ``ended`` event is
        better taken from it than synthesized. Only sessions whose callbacks are known to arrive
        (their AgentInstanceCreated did) wait, and never longer than the settings' ``end_confirm_seconds``.
        """
        if self._end_confirm <= 0 or record.instance_id is None:
            return None
        if not await self._ledger.has_event(record.instance_id, EventType.CREATED):
            return None
        # Subscribe first, then read: an end that lands in between is seen by one or the other.
        with self._events.bus.subscribe(
            EventFilter(session_ids=frozenset({record.session_id}), event_types=frozenset({EventType.ENDED}))
        ) as ended:
            current = await self._ledger.get_session(record.session_id)
            if current is not None and current.terminal:
                return current
            if await ended.next(self._end_confirm) is None:
                return None
        return await self._ledger.get_session(record.session_id)

    async def mark_ended(
        self, record: SessionRecord, reason: EndReason, cause: str, detail: str = "", code: int | None = None
    ) -> SessionRecord:
        """Record that the instance is gone, with the session's one ``ended`` event (idempotent)."""
        return await self.end_with_event(
            record, reason, cause, self.ended_event(record, reason, code), detail, code
        )

    async def end_with_event(
        self,
        record: SessionRecord,
        reason: EndReason,
        cause: str,
        event: NewEvent,
        detail: str = "",
        code: int | None = None,
    ) -> SessionRecord:
        """ENDED plus ``event`` in one transaction. A session already terminal is returned as is."""
        try:
            ended, _ = await self._events.transition_with_event(
                record.session_id,
                S.ENDED,
                expected=SLOT_HOLDING_STATES - {S.PENDING},
                cause=cause,
                detail=detail,
                event=event,
                updates={
                    "end_reason": reason,
                    "end_detail": detail,
                    "zego_code": code,
                    "possible_leak": False,
                },
            )
            return ended
        except TransitionConflict as conflict:
            if conflict.current is not None and conflict.current.terminal:
                return conflict.current
            raise

    def ended_event(self, record: SessionRecord, reason: EndReason, code: int | None) -> NewEvent:
        """The ``ended`` event the gateway synthesizes when ZEGO's callback did not end the session."""
        now = self._clock()
        return NewEvent(
            event_type=EventType.ENDED,
            session_id=record.session_id,
            instance_id=record.instance_id,
            agent_id=record.agent_id,
            room_id=record.room_id,
            event_time_ms=int(now * 1000),
            received_at=now,
            sequence=None,
            round=None,
            data={"reason": reason.value, "zego_code": code or 0, "latency": None, "synthesized": True},
            labels=record.labels,
            agent_user_id=record.agent_user_id,
            owner=record.owner,
        )

    async def _move(
        self,
        record: SessionRecord,
        to: SessionState,
        cause: str,
        detail: str = "",
        updates: Mapping[str, Any] | None = None,
    ) -> SessionRecord:
        return await self._ledger.transition(
            record.session_id,
            to,
            expected=SLOT_HOLDING_STATES - {S.PENDING} if to is not S.ACTIVE else frozenset({S.STARTING}),
            at=self._clock(),
            cause=cause,
            detail=detail,
            updates=updates,
        )

    async def mark_active(self, record: SessionRecord, cause: str) -> SessionRecord:
        """STARTING -> ACTIVE once the agent is confirmed in the room (idempotent)."""
        try:
            return await self._move(record, S.ACTIVE, cause)
        except TransitionConflict as conflict:
            if conflict.current is not None and conflict.current.state is not S.STARTING:
                return conflict.current
            raise

    @property
    def events(self) -> EventLog:
        """The event log sessions write their terminal events to."""
        return self._events

    def is_creating(self, session_id: str) -> bool:
        """Whether this process is still waiting for ZEGO to answer this session's create."""
        return session_id in self._inflight

    @property
    def zego(self) -> ZegoPort:
        """The ZEGO port (the leak tracker and the reaper ask it about instances too)."""
        return self._zego
