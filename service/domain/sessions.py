"""Sessions: crash-safe, idempotent creation under admission control, ending, and state changes.

Creation, step by step (each step is durable before the next begins):

1. One ledger transaction reserves a capacity slot and commits a PENDING row holding the
   request_id, its body hash and the generated agent user and stream ids. A known request_id
   returns the original row instead (a different body is ``RequestIdReused``); a full pool is
   ``CapacityExhausted``. So ZEGO never sees more creates than there are slots.
2. ZEGO is called.
3. Its answer is recorded: STARTING with the AgentInstanceId, or FAILED with CREATE_FAILED when
   ZEGO said no. When no answer came (timeout, dropped connection) the instance may exist, so the
   row is FAILED with CREATE_UNCONFIRMED and flagged ``possible_leak``.

If the process dies between 2 and 3 the row stays PENDING; ``service.domain.reaper`` resolves it
at the next start. Shutting the gateway down never ends a session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from service import tracing
from service.auth.principal import current_principal
from service.domain.access import check_may_change, check_session_change, check_session_read, owner_scope
from service.domain.event_log import EventBus, EventLog
from service.domain.events import EventFilter, EventType, NewEvent
from service.domain.model import (
    SLOT_HOLDING_STATES,
    EndReason,
    NewSession,
    SessionFilter,
    SessionRecord,
    SessionState,
    Transition,
    TurnStats,
)
from service.domain.quotas import QuotaPolicy
from service.domain.session_spec import CreateSpec, create_instance
from service.errors import (
    CapacityExhausted,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    QuotaExhausted,
    RequestIdReused,
)
from service.store.base import Capacity, Ledger, TransitionConflict
from service.zego import exceptions as zx
from service.zego import models as m
from service.zego.client import ZegoClient

__all__ = ["CreateSpec", "SessionService", "end_reason_for_zego_code"]

T = TypeVar("T")
S = SessionState
CONTROLLABLE = frozenset({S.STARTING, S.ACTIVE})
"""States in which in-call control reaches ZEGO."""
CAPACITY_RETRY_SECONDS = 5.0


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


class SessionObserver(Protocol):
    """Metrics hooks for creation (``service.metrics.Metrics`` satisfies it)."""

    def session_created(self, kind: str, outcome: str) -> None:
        """A CreateSession ended with ``outcome``."""

    def admission_rejected(self, kind: str) -> None:
        """A create was refused for lack of a slot."""

    def possible_leak(self, kind: str) -> None:
        """An instance may run upstream without the ledger knowing its id."""


class _NullSessionObserver:
    def session_created(self, kind: str, outcome: str) -> None:
        return None

    def admission_rejected(self, kind: str) -> None:
        return None

    def possible_leak(self, kind: str) -> None:
        return None


class SessionService:
    """The ledger-backed session lifecycle over the ZEGO client."""

    def __init__(
        self,
        zego: ZegoClient,
        ledger: Ledger,
        *,
        limits: Mapping[str, int],
        default_max_duration_seconds: int,
        events: EventLog | None = None,
        observer: SessionObserver | None = None,
        end_confirm_seconds: float = 0.0,
        quotas: QuotaPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._end_confirm = end_confirm_seconds
        self._quotas = quotas
        self._observer: SessionObserver = observer or _NullSessionObserver()
        self._zego = zego
        self._ledger = ledger
        self._events = events if events is not None else EventLog(ledger, EventBus(), clock=clock)
        self._limits = dict(limits)
        self._default_max_duration = default_max_duration_seconds
        self._clock = clock
        # Creates in flight in this process: a concurrent retry of the same request_id waits here.
        self._inflight: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Future[SessionRecord]] = set()

    @property
    def ledger(self) -> Ledger:
        """The ledger (the reaper and the API read it too)."""
        return self._ledger

    def limit(self, pool: str) -> int:
        """The admission limit of a pool."""
        return self._limits[pool]

    # --- create ---------------------------------------------------------------------------------

    async def create(self, spec: CreateSpec, *, timeout: float | None = None) -> SessionRecord:
        """Reserve, call ZEGO, record the answer. See the module docstring."""
        check_may_change("create sessions")
        principal = current_principal()
        session_id = uuid.uuid4().hex
        new = NewSession(
            session_id=session_id,
            kind=spec.kind,
            agent_id=spec.agent_id,
            user_id=spec.user_id,
            room_id=spec.room_id,
            # ZEGO needs both unique among running instances (spec §6.1); the session id is.
            agent_user_id=spec.agent_user_id or f"ag_{session_id[:28]}",
            agent_stream_id=spec.agent_stream_id or f"ag_{session_id}_main",
            user_stream_id=spec.user_stream_id,
            labels=dict(spec.labels),
            max_duration_seconds=spec.max_duration_seconds or self._default_max_duration,
            request_id=spec.request_id or None,
            request_hash=spec.request_hash or None,
            created_at=self._clock(),
            cdn_url=spec.cdn_url,
            owner=principal.name,
            trace_parent=tracing.current_traceparent(),
        )
        pool = spec.kind.pool
        quota = None if self._quotas is None else self._quotas.for_caller(principal.name).sessions(pool)
        outcome = await self._ledger.reserve_session(new, self._limits[pool], quota)
        if outcome.over_quota:
            assert quota is not None
            self._observer.session_created(spec.kind.value, "rejected_quota")
            raise QuotaExhausted(principal.name, pool, quota, outcome.owner_in_use, CAPACITY_RETRY_SECONDS)
        if outcome.session is None:
            cap = outcome.capacity
            self._observer.admission_rejected(spec.kind.value)
            self._observer.session_created(spec.kind.value, "rejected_capacity")
            raise CapacityExhausted(cap.pool, cap.limit, cap.in_use, CAPACITY_RETRY_SECONDS)
        if not outcome.created:
            replayed = await self._replay(outcome.session, spec, timeout)
            self._observer.session_created(spec.kind.value, "replayed")
            return replayed
        done = self._inflight[session_id] = asyncio.Event()
        # Shielded: a caller that gives up (cancels) must not stop us from recording ZEGO's answer,
        # or the instance would run upstream with a PENDING row nobody can resolve.
        task = asyncio.ensure_future(self._start(outcome.session, spec, timeout))
        self._tasks.add(task)

        def finished(t: asyncio.Future[SessionRecord]) -> None:
            self._tasks.discard(t)
            done.set()
            self._inflight.pop(session_id, None)
            if not t.cancelled():
                t.exception()  # retrieved here, so an abandoned failure logs no "never retrieved"

        task.add_done_callback(finished)
        return await asyncio.shield(task)

    async def _replay(
        self, original: SessionRecord, spec: CreateSpec, timeout: float | None
    ) -> SessionRecord:
        # Another caller's request_id is "reused" too: its session is never handed to this one.
        if original.request_hash != (spec.request_hash or None) or original.owner != current_principal().name:
            raise RequestIdReused(spec.request_id)
        event = self._inflight.get(original.session_id)
        if event is not None and original.state is S.PENDING:
            # The first attempt is still talking to ZEGO: answer with its outcome, not a PENDING row.
            async with asyncio.timeout(timeout):
                await event.wait()
        return await self.get(original.session_id)

    async def _start(self, row: SessionRecord, spec: CreateSpec, timeout: float | None) -> SessionRecord:
        try:
            instance_id, dh_config = await create_instance(self._zego, row, spec, timeout)
        except zx.ZegoApiError as exc:
            # ZEGO answered "no": no instance exists, so the slot is free again.
            await self._fail(row, EndReason.CREATE_FAILED, f"ZEGO code {exc.code}: {exc.message}", exc.code)
            self._observer.session_created(row.kind.value, "failed_upstream")
            raise
        except zx.ZegoError as exc:
            # No answer: the instance may exist, and without its id nobody can delete it.
            await self._fail(row, EndReason.CREATE_UNCONFIRMED, str(exc), None, possible_leak=True)
            self._observer.session_created(row.kind.value, "failed_unconfirmed")
            self._observer.possible_leak(row.kind.value)
            raise
        self._observer.session_created(row.kind.value, "created")
        # Callbacks can beat ZEGO's answer to us: the same transaction claims what arrived for
        # this instance meanwhile, and tells whether its AgentInstanceCreated was among it.
        record, created_seen = await self._ledger.start_session(
            row.session_id,
            at=self._clock(),
            instance_id=instance_id,
            updates={"digital_human_config": dh_config},
        )
        if created_seen:
            record = await self.mark_active(record, "zego_created_callback")
        return record

    async def _fail(
        self,
        row: SessionRecord,
        reason: EndReason,
        detail: str,
        code: int | None,
        *,
        possible_leak: bool = False,
    ) -> SessionRecord:
        record, _ = await self._events.transition_with_event(
            row.session_id,
            S.FAILED,
            expected=frozenset({S.PENDING}),
            cause="create_failed",
            detail=detail[:500],
            event=self.ended_event(row, reason, code),
            updates={
                "end_reason": reason,
                "end_detail": detail[:500],
                "zego_code": code,
                "possible_leak": possible_leak,
            },
        )
        return record

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
        """Delete the instance. Idempotent: an ended session is returned as it is."""
        record = await self.get(session_id)
        check_session_change(session_id, record.owner, "end it")
        if record.terminal:
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
            await self._zego.delete_agent_instance(
                m.DeleteAgentInstanceRequest(
                    agent_instance_id=record.instance_id,
                    graceful_shutdown=graceful or None,
                    graceful_shutdown_timeout=graceful_timeout_seconds if graceful else None,
                ),
                timeout=timeout,
            )
        except zx.ZegoInstanceNotFound:
            gone = record.end_reason if already_ending and record.end_reason else EndReason.UPSTREAM_GONE
            return await self.mark_ended(record, gone, cause, "ZEGO no longer knows the instance")
        except zx.ZegoStateConflict as exc:
            if exc.code == 410001041:  # already shutting down gracefully: the end is under way
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
        (their AgentInstanceCreated did) wait, and never longer than ``end_confirm_seconds``.
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

    # --- in-call control --------------------------------------------------------------------------

    async def control(
        self, session_id: str, call: Callable[[str], Awaitable[T]], *, changes: bool = True
    ) -> T:
        """Run ``call(instance_id)`` against a live session.

        ``changes`` says whether the call steers the session (only its owner or an admin may) or
        only reads it (viewers may too). A session that is not running is ``FailedPrecondition``.
        When ZEGO no longer knows the instance, the session is recorded as ended (UPSTREAM_GONE)
        before the error is raised.
        """
        record = await self.get(session_id)
        if changes:
            check_session_change(session_id, record.owner, "steer it")
        if record.state not in CONTROLLABLE or record.instance_id is None:
            raise FailedPrecondition(
                "SESSION_NOT_RUNNING", session_id, f"the session is {record.state.value}, not running"
            )
        try:
            return await call(record.instance_id)
        except zx.ZegoInstanceNotFound:
            await self.mark_ended(
                record, EndReason.UPSTREAM_GONE, "control", "ZEGO no longer knows the instance"
            )
            raise FailedPrecondition("SESSION_ENDED", session_id, "the session has ended upstream") from None

    async def record_user_stream(self, session_id: str, user_stream_id: str) -> SessionRecord:
        """Record the user stream the agent now plays (after UpdateAgentInstance succeeded)."""
        return await self._ledger.update_session(
            session_id, {"user_stream_id": user_stream_id}, self._clock()
        )

    def is_creating(self, session_id: str) -> bool:
        """Whether this process is still waiting for ZEGO to answer this session's create."""
        return session_id in self._inflight

    @property
    def zego(self) -> ZegoClient:
        """The ZEGO client, for the control calls the API layer builds."""
        return self._zego
