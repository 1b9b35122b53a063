"""The session reaper and start-up recovery: the ledger is the only inventory of paid, capped instances.

ZEGO has no list-instances API, so nothing but our own rows tells us what runs (and costs money)
upstream. Everything here therefore starts from the ledger and only ever acts on instance ids stored
in it: an instance the gateway did not create is never queried, let alone deleted.

A periodic pass (:meth:`Reaper.run_once`, run every ``interval_seconds`` by the background task)
applies, to each non-terminal row, at most one rule:

1. STARTING/ACTIVE past ``deadline`` (created_at + max_duration): end it (MAX_DURATION).
2. STARTING for longer than ``starting_timeout_seconds``: ask ZEGO. Alive -> ACTIVE; unknown
   (410001002) -> ENDED UPSTREAM_GONE, which frees the slot.
3. ENDING for longer than ``ending_timeout_seconds``: ask ZEGO. Unknown -> ENDED with the reason the
   end was asked for (UPSTREAM_GONE if none was recorded); alive -> send a non-graceful delete again.
4. PENDING for longer than ``pending_grace_seconds`` and not being created by this process: the
   process that called ZEGO is gone. If a callback named the session, ZEGO created it: the row
   takes that instance id and is checked as a STARTING row. Otherwise whether an instance exists is
   unknown -> FAILED CREATE_UNCONFIRMED with ``possible_leak`` and its ``ended`` event; the row
   keeps its capacity slot (``service.domain.leaks``).
5. ACTIVE and not asked about for ``active_probe_seconds``: ask ZEGO. Unknown -> ENDED
   UPSTREAM_GONE with a synthesized ``ended`` event. ZEGO's AgentInstanceDeleted callback is best
   effort; without this, an instance ZEGO removed silently (MaxIdleTime, say) would hold its slot
   and leave its subscribers waiting until max_duration.

:meth:`Reaper.reconcile_at_startup` runs once before the gateway serves: PENDING rows become
CREATE_UNCONFIRMED at once (nothing of ours can be in flight yet) and every other live row is checked
upstream. Sessions outlive a gateway restart, so neither path ever ends a healthy session.

After every pass, and at start-up, ``LeakTracker.run_once`` retries the possible leaks that are
due, until ZEGO confirms their instances gone or the give-up time passes.

ZEGO failures (timeouts, dropped connections, system errors) leave a row as it is for the next pass;
one bad row never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from service.domain.leaks import LeakReport
from service.domain.model import SLOT_HOLDING_STATES, EndReason, SessionRecord, SessionState
from service.domain.reaper_reports import (
    NullReaperObserver,
    Outcome,
    PassReport,
    ReaperObserver,
    ReconcileReport,
)
from service.domain.replicas import Replicas, SoleReplica
from service.domain.sessions import SessionService
from service.store.base import TransitionConflict
from service.zego import exceptions as zx
from service.zego import models as m

__all__ = ["NullReaperObserver", "PassReport", "Reaper", "ReaperObserver", "ReconcileReport"]

log = logging.getLogger("agentgw.reaper")

S = SessionState
GRACEFUL_SHUTDOWN_IN_PROGRESS = 410001041
"""ZEGO's answer to any call on an instance that is finishing a graceful delete (spec §5.10)."""
MAX_INTERVAL_SECONDS = 3600.0


class Reaper:
    """Enforces max_duration and resolves rows stuck in PENDING, STARTING or ENDING (module docstring).

    Use ``async with Reaper(...)`` (or :meth:`start`/:meth:`stop`) to run one background task that
    calls :meth:`run_once` every ``interval_seconds``; tests call :meth:`run_once` directly.

    Args:
        active_probe_seconds: how often an ACTIVE session is checked upstream (rule 5).
        starting_timeout_seconds, ending_timeout_seconds, pending_grace_seconds: how long a row may
            sit in STARTING, ENDING or PENDING (since its ``updated_at``) before the reaper acts.
        call_timeout_seconds: the budget of each ZEGO call the reaper makes.
        clock: must be the SessionService's clock, since the ledger's timestamps come from it.
        observer: metrics hooks; exceptions it raises are logged and ignored.
    """

    def __init__(
        self,
        sessions: SessionService,
        *,
        interval_seconds: float = 5.0,
        starting_timeout_seconds: float = 30.0,
        ending_timeout_seconds: float = 60.0,
        pending_grace_seconds: float = 30.0,
        active_probe_seconds: float = 60.0,
        call_timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
        observer: ReaperObserver | None = None,
        replicas: Replicas | None = None,
    ) -> None:
        if not (0 < interval_seconds <= MAX_INTERVAL_SECONDS):
            raise ValueError(f"interval_seconds must be in (0, {MAX_INTERVAL_SECONDS:g}]")
        ages = (starting_timeout_seconds, ending_timeout_seconds, pending_grace_seconds)
        if not all(age >= 0 and math.isfinite(age) for age in ages):
            raise ValueError("the timeouts and the pending grace must be non-negative numbers")
        if not (call_timeout_seconds > 0 and math.isfinite(call_timeout_seconds)):
            raise ValueError("call_timeout_seconds must be a positive number")
        self._sessions = sessions
        self._interval = interval_seconds
        self._starting_timeout = starting_timeout_seconds
        self._ending_timeout = ending_timeout_seconds
        # The create call is bounded by the ZEGO client's timeout; a row older than the grace whose
        # call is not in flight here was left behind by a process that died mid-create.
        self._pending_grace = pending_grace_seconds
        self._call_timeout = call_timeout_seconds
        self._clock = clock
        self._observer: ReaperObserver = observer if observer is not None else NullReaperObserver()
        # In a fleet, a PENDING row of another live replica is its create in flight, not ours to settle.
        self._replicas: Replicas = replicas if replicas is not None else SoleReplica()
        # Passes never overlap (the loop and a direct run_once, or reconcile): each reads the rows
        # and acts on them, and two readers would send ZEGO the same delete twice.
        self._pass_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._active_probe = active_probe_seconds
        self._probed: dict[str, float] = {}

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the background task; the first pass runs after one interval."""
        if self._task is not None:
            raise RuntimeError("the reaper is already started")
        self._task = asyncio.create_task(self._loop(), name="agentgw-reaper")

    async def stop(self) -> None:
        """Stop the background task. Idempotent.

        Cancelling mid-pass is safe: a ledger transaction is rolled back, and a ZEGO call whose
        outcome is lost leaves its row in a state the next pass or start-up resolves.
        """
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.error("reaper task had failed", exc_info=task.exception())

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.run_once()
            except Exception:
                # E.g. the ledger could not be read; the loop must outlive any single pass.
                log.exception("reaper pass failed; retrying in %.1f s", self._interval)

    # --- the periodic pass ------------------------------------------------------------------------

    async def run_once(self) -> PassReport:
        """One pass over every non-terminal row (rules 1-4 of the module docstring)."""
        async with self._pass_lock:
            rows = await self._sessions.ledger.sessions_in_states(SLOT_HOLDING_STATES)
            live = {r.session_id for r in rows}
            self._probed = {sid: at for sid, at in self._probed.items() if sid in live}
            counts: Counter[str] = Counter()
            for record in rows:
                counts[(await self._guarded(record, self._reap(record))).value] += 1
            leaks = await self._leak_pass()
        counts.pop(Outcome.UNTOUCHED.value, None)
        report = PassReport(examined=len(rows), leaks_resolved=leaks.resolved, leaked=leaks.leaked, **counts)
        if sum(counts.values()):
            log.info("reaper pass: %s", report)
        return report

    async def _reap(self, record: SessionRecord) -> Outcome:
        now = self._clock()
        age = now - record.updated_at
        if record.state in (S.STARTING, S.ACTIVE) and now >= record.deadline:
            return await self._end_max_duration(record)
        if record.state is S.STARTING and age >= self._starting_timeout:
            return await self._verify(record, "reaper")
        if record.state is S.ENDING and age >= self._ending_timeout:
            return await self._verify(record, "reaper")
        if record.state is S.ACTIVE and now - self._probed.get(record.session_id, record.updated_at) >= (
            self._active_probe
        ):
            # ZEGO's AgentInstanceDeleted is best effort: if it was lost (e.g. after MaxIdleTime),
            # only asking tells us the instance is gone, frees its slot and ends its event stream.
            self._probed[record.session_id] = now
            return await self._verify(record, "reaper_probe")
        if (
            record.state is S.PENDING
            and age >= self._pending_grace
            and not self._sessions.is_creating(record.session_id)
            and not await self._replicas.in_flight_elsewhere(record.session_id)
        ):
            return await self._fail_unconfirmed(record, "reaper_create_unconfirmed")
        return Outcome.UNTOUCHED

    async def _end_max_duration(self, record: SessionRecord) -> Outcome:
        sid = record.session_id
        log.info("ending session %s at max_duration", sid, extra={"session_id": sid})
        ended = await self._sessions.end(
            record.session_id,
            reason=EndReason.MAX_DURATION,
            cause="reaper_max_duration",
            timeout=self._call_timeout,
        )
        self._notify_ended(ended)
        return Outcome.MAX_DURATION

    # --- start-up ---------------------------------------------------------------------------------

    async def reconcile_at_startup(self) -> ReconcileReport:
        """Resolve what a previous process left behind; call once before the gateway serves.

        PENDING rows are settled as rule 4 says (adopted if a callback named them, else
        CREATE_UNCONFIRMED with ``possible_leak``); STARTING, ACTIVE and ENDING
        rows are checked upstream (alive STARTING -> ACTIVE, alive ENDING -> delete retried, gone ->
        ENDED). A row ZEGO could not be asked about is left for the periodic pass ("unverified").
        """
        async with self._pass_lock:
            rows = await self._sessions.ledger.sessions_in_states(SLOT_HOLDING_STATES)
            counts: Counter[str] = Counter()
            for record in rows:
                if record.state is not S.PENDING:
                    step = self._verify(record, "reconcile")
                elif self._sessions.is_creating(record.session_id) or (
                    await self._replicas.in_flight_elsewhere(record.session_id)
                ):
                    # After serving began (a lease taken over), or another live replica's create:
                    # that create will settle the row.
                    counts[Outcome.UNTOUCHED.value] += 1
                    continue
                else:
                    step = self._fail_unconfirmed(record, "reconcile_create_unconfirmed")
                counts[(await self._guarded(record, step)).value] += 1
            leaks = await self._leak_pass()
        report = ReconcileReport(
            examined=len(rows), leaks_resolved=leaks.resolved, leaked=leaks.leaked, **counts
        )
        log.info("start-up reconciliation: %s", report)
        return report

    # --- shared steps -----------------------------------------------------------------------------

    async def _leak_pass(self) -> LeakReport:
        """Retry the possible leaks that are due (``service.domain.leaks``); never raises."""
        try:
            return await self._sessions.leaks.run_once()
        except Exception:
            log.exception("leak pass failed; retrying next pass")
            return LeakReport()

    async def _guarded(self, record: SessionRecord, step: Awaitable[Outcome]) -> Outcome:
        """Run one row's step so that its failure is logged and never reaches the other rows."""
        sid = record.session_id
        try:
            return await step
        except zx.ZegoError as exc:
            # Transport errors, deadlines, ZEGO system errors: nothing is known, so nothing changes.
            what = f"{record.state.value}: ZEGO {exc.action} failed ({exc.outcome})"
            log.warning("session %s (%s); retrying next pass", sid, what, extra={"session_id": sid})
            return Outcome.UNVERIFIED
        except TransitionConflict as conflict:
            # An RPC or a callback moved the row meanwhile; its newer knowledge wins.
            now = conflict.current.state.value if conflict.current is not None else "missing"
            log.info("session %s changed under the reaper (now %s)", sid, now, extra={"session_id": sid})
            return Outcome.UNTOUCHED
        except Exception:
            log.exception("reaper failed on session %s", sid, extra={"session_id": sid})
            return Outcome.ERRORS

    async def _verify(self, record: SessionRecord, cause: str) -> Outcome:
        """Ask ZEGO whether the instance of a STARTING, ACTIVE or ENDING row still exists, and act."""
        if record.instance_id is None:
            # Every transition out of PENDING stores the id; a row without one is corrupt.
            raise ValueError(f"{record.state.value} session has no instance id")
        try:
            await self._sessions.zego.query_agent_instance_status(
                m.QueryAgentInstanceStatusRequest(agent_instance_id=record.instance_id),
                timeout=self._call_timeout,
            )
        except zx.ZegoInstanceNotFound:
            reason = EndReason.UPSTREAM_GONE
            if record.state is S.ENDING and record.end_reason is not None:
                reason = record.end_reason  # the end was asked for; ZEGO finished it
            ended = await self._sessions.mark_ended(
                record, reason, cause, "ZEGO no longer knows the instance (410001002)"
            )
            self._notify_ended(ended)
            return Outcome.ENDED
        except zx.ZegoStateConflict as exc:
            if exc.code != GRACEFUL_SHUTDOWN_IN_PROGRESS:
                raise
            # A graceful delete is under way; ZEGO finishes it within its timeout (<= 120 s).
            return Outcome.ALIVE
        if record.state is S.STARTING:
            await self._sessions.mark_active(record, f"{cause}_status_ok")
            return Outcome.ACTIVATED
        if record.state is S.ENDING:
            # The delete was lost (or the process died before sending it): send it again, non-graceful.
            ended = await self._sessions.end(
                record.session_id,
                reason=record.end_reason or EndReason.ENDED_BY_CALLER,
                cause=f"{cause}_end_retry",
                timeout=self._call_timeout,
            )
            self._notify_ended(ended)
            return Outcome.ENDED if ended.terminal else Outcome.ALIVE
        return Outcome.ALIVE

    async def _fail_unconfirmed(self, record: SessionRecord, cause: str) -> Outcome:
        """Settle an abandoned PENDING row (``LeakTracker.resolve_pending``): adopt the instance a
        callback revealed, or fail it as CREATE_UNCONFIRMED with ``possible_leak``."""
        settled = await self._sessions.leaks.resolve_pending(record, cause)
        if settled.state is S.STARTING:
            # ZEGO created it: ask now whether it still runs (ACTIVE) or has gone (ENDED).
            return await self._verify(settled, cause)
        self._call_observer(self._observer.possible_leak, settled.kind)
        self._notify_ended(settled)
        return Outcome.CREATE_UNCONFIRMED

    def _notify_ended(self, record: SessionRecord) -> None:
        if record.terminal and record.end_reason is not None:
            self._call_observer(self._observer.session_ended, record.kind, record.end_reason)

    @staticmethod
    def _call_observer(hook: Callable[..., None], *args: object) -> None:
        try:
            hook(*args)
        except Exception:
            # Metrics are not worth a row: the ledger change is already committed.
            log.exception("reaper observer %s failed", getattr(hook, "__name__", hook))
