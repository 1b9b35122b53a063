"""Session creation, step by step (each step is durable before the next begins).

1. One ledger transaction reserves a capacity slot and commits a PENDING row holding the
   request_id, its body hash and the generated agent user and stream ids. A known request_id
   returns the original row instead (a different body is ``RequestIdReused``), unless the original
   attempt failed in a way that is safe to retry (``service.domain.create_retry``): then the retry
   takes over the request_id as a new attempt. A full pool is ``CapacityExhausted``; rows that
   may still have an instance at ZEGO (``possible_leak``) count as full slots. So ZEGO never sees
   more creates than there are slots.
2. ZEGO is called.
3. Its answer is recorded: STARTING with the AgentInstanceId, or FAILED with CREATE_FAILED when
   ZEGO said no (or the request never left). When no answer came (timeout, dropped connection)
   the instance may exist, so the row is FAILED with CREATE_UNCONFIRMED and flagged
   ``possible_leak``: it keeps its slot until ZEGO confirms no instance (``service.domain.leaks``).

If the process dies between 2 and 3 the row stays PENDING; ``service.domain.reaper`` resolves it
at the next start.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Protocol

from service import tracing
from service.auth.principal import current_principal
from service.domain import zego_errors as zx
from service.domain.access import check_may_change
from service.domain.create_retry import never_sent, retryable_failure
from service.domain.event_log import EventLog
from service.domain.events import NewEvent
from service.domain.model import EndReason, NewSession, SessionRecord, SessionState
from service.domain.ports import Ledger
from service.domain.quotas import QuotaPolicy
from service.domain.session_spec import CreateSpec, create_instance
from service.domain.zego_port import ZegoPort
from service.errors import CapacityExhausted, QuotaExhausted, RequestIdReused

__all__ = ["CAPACITY_RETRY_SECONDS", "CreateMixin", "NullSessionObserver", "SessionObserver"]

S = SessionState
CAPACITY_RETRY_SECONDS = 5.0


class SessionObserver(Protocol):
    """Metrics hooks for creation (``service.metrics.Metrics`` satisfies it)."""

    def session_created(self, kind: str, outcome: str) -> None:
        """A CreateSession ended with ``outcome``."""

    def admission_rejected(self, kind: str) -> None:
        """A create was refused for lack of a slot."""

    def possible_leak(self, kind: str) -> None:
        """An instance may run upstream without the ledger knowing its id."""


class NullSessionObserver:
    """Records nothing."""

    def session_created(self, kind: str, outcome: str) -> None:
        return None

    def admission_rejected(self, kind: str) -> None:
        return None

    def possible_leak(self, kind: str) -> None:
        return None


class CreateMixin:
    """``SessionService.create`` and its steps (module docstring); the host provides the state."""

    _zego: ZegoPort
    _ledger: Ledger
    _events: EventLog
    _limits: dict[str, int]
    _quotas: QuotaPolicy | None
    _default_max_duration: int
    _clock: Callable[[], float]
    _observer: SessionObserver
    _inflight: dict[str, asyncio.Event]
    _tasks: set[asyncio.Future[SessionRecord]]

    async def get(self, session_id: str) -> SessionRecord:
        """One session, or ``NotFound`` (the host's)."""
        raise NotImplementedError

    async def mark_active(self, record: SessionRecord, cause: str) -> SessionRecord:
        """STARTING -> ACTIVE (the host's)."""
        raise NotImplementedError

    def ended_event(self, record: SessionRecord, reason: EndReason, code: int | None) -> NewEvent:
        """The synthesized ``ended`` event (the host's)."""
        raise NotImplementedError

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
        row, created = await self._reserve(new, spec)
        if not created:
            replayed = await self._replay(row, spec, timeout)
            self._observer.session_created(spec.kind.value, "replayed")
            return replayed
        done = self._inflight[session_id] = asyncio.Event()
        # Shielded: a caller that gives up (cancels) must not stop us from recording ZEGO's answer,
        # or the instance would run upstream with a PENDING row nobody can resolve.
        task = asyncio.ensure_future(self._start(row, spec, timeout))
        self._tasks.add(task)

        def finished(t: asyncio.Future[SessionRecord]) -> None:
            self._tasks.discard(t)
            done.set()
            self._inflight.pop(session_id, None)
            if not t.cancelled():
                t.exception()  # retrieved here, so an abandoned failure logs no "never retrieved"

        task.add_done_callback(finished)
        return await asyncio.shield(task)

    async def _reserve(self, new: NewSession, spec: CreateSpec) -> tuple[SessionRecord, bool]:
        """Step 1: a slot and a new PENDING row (True), or the row a known request_id already has
        (False; taken over as a new attempt when its failure is safe to retry). ``QuotaExhausted`` or
        ``CapacityExhausted`` when the caller's quota or the pool has no room."""
        pool = spec.kind.pool
        limit = self._limits[pool]
        owner = new.owner
        quota = None if self._quotas is None else self._quotas.for_caller(owner).sessions(pool)
        outcome = await self._ledger.reserve_session(new, limit, quota)
        first = outcome.session
        if (
            first is not None
            and not outcome.created
            and first.request_hash == (spec.request_hash or None)
            and first.owner == owner
            and retryable_failure(first, self._zego.error_class)
        ):
            # AIP-155: the first attempt failed in a way that is safe to retry (ZEGO answered "no",
            # or confirmed no instance), so this retry is a new attempt, not a replay of the failure.
            outcome = await self._ledger.retry_session(first.session_id, new, limit, quota)
        if outcome.over_quota:
            assert quota is not None
            self._observer.session_created(spec.kind.value, "rejected_quota")
            raise QuotaExhausted(owner, pool, quota, outcome.owner_in_use, CAPACITY_RETRY_SECONDS)
        if outcome.session is None:
            cap = outcome.capacity
            self._observer.admission_rejected(spec.kind.value)
            self._observer.session_created(spec.kind.value, "rejected_capacity")
            raise CapacityExhausted(cap.pool, cap.limit, cap.in_use, CAPACITY_RETRY_SECONDS)
        return outcome.session, outcome.created

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
            detail = f"ZEGO code {exc.code}: {exc.message}"
            await self.fail_pending(row, EndReason.CREATE_FAILED, detail, exc.code)
            self._observer.session_created(row.kind.value, "failed_upstream")
            raise
        except zx.ZegoError as exc:
            if never_sent(exc):
                # The request never left (no connection, or no budget): ZEGO cannot have acted.
                await self.fail_pending(row, EndReason.CREATE_FAILED, str(exc), None)
                self._observer.session_created(row.kind.value, "failed_upstream")
                raise
            # No answer: the instance may exist, and without its id nobody can delete it.
            await self.fail_pending(row, EndReason.CREATE_UNCONFIRMED, str(exc), None, possible_leak=True)
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

    async def fail_pending(
        self,
        row: SessionRecord,
        reason: EndReason,
        detail: str,
        code: int | None,
        *,
        cause: str = "create_failed",
        possible_leak: bool = False,
    ) -> SessionRecord:
        """PENDING -> FAILED with the session's one ``ended`` event (so it is counted as ended).

        With ``possible_leak`` the row keeps its capacity slot until ZEGO confirms no instance.
        """
        record, _ = await self._events.transition_with_event(
            row.session_id,
            S.FAILED,
            expected=frozenset({S.PENDING}),
            cause=cause,
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
