"""Instances that may still run at ZEGO: find them, retry until ZEGO confirms them gone, or report them.

A session row is a *possible leak* (``possible_leak``) when it ended without ZEGO confirming that
its instance is gone: a create whose answer never came (CREATE_UNCONFIRMED), a PENDING row left by a
process that died mid-create, or an orphan (such a create that did start an instance, which a late
AgentInstanceCreated revealed). Such a row keeps its capacity slot (``Capacity.suspect``): ZEGO
counts the instance against the account's cap whether or not we know its id.

What the gateway can learn, since ZEGO has no list-instances API (spec §4):

* With an instance id (ZEGO's answer, or any callback that named the session's generated room and
  agent user ids), DeleteAgentInstance settles it: success, or 410001002 (unknown instance), means
  it is gone. An AgentInstanceDeleted callback for it says the same.
* Without one, nothing can be asked: QueryAgentInstanceStatus needs the id, and no action looks an
  instance up by agent user id or stream id. The row waits for a callback; ZEGO retries callbacks
  for only 62 s, so after a longer outage the row stays a possible leak.

:class:`LeakTracker` retries every possible leak with exponential backoff until ZEGO confirms it
gone or ``give_up_seconds`` (counted from the session's end) pass. After that the row is a *leak*:
no more calls, still flagged in ListSessions, still holding its slot, counted by the
``agentgw_leaked_sessions`` gauge that the AgentgwPossibleInstanceLeak alert watches.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from service.domain import zego_errors as zx
from service.domain.events import EventType
from service.domain.model import EndReason, SessionRecord

if TYPE_CHECKING:
    from service.domain.sessions import SessionService

__all__ = ["LeakPolicy", "LeakReport", "LeakTracker"]

log = logging.getLogger("agentgw.leaks")


@dataclass(frozen=True)
class LeakPolicy:
    """How hard the gateway tries to confirm that a possibly leaked instance is gone.

    Attempt ``n`` (from 0) is followed by a wait of ``min(retry_initial * 2**n, retry_max)``; once
    ``give_up_seconds`` have passed since the session ended, the row is reported as a leak and no
    longer retried.
    """

    give_up_seconds: float = 3600.0
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    call_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        values = (self.give_up_seconds, self.retry_initial_seconds, self.retry_max_seconds)
        if not all(v > 0 and math.isfinite(v) for v in (*values, self.call_timeout_seconds)):
            raise ValueError("the leak give-up time, retry delays and call timeout must be positive")
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("the largest leak retry delay must not be below the first")

    def delay(self, attempts: int) -> float:
        """The wait after ``attempts`` failed attempts."""
        return float(min(self.retry_initial_seconds * 2 ** min(attempts - 1, 60), self.retry_max_seconds))


@dataclass(frozen=True)
class LeakReport:
    """What one pass over the possible leaks did, in rows.

    ``examined``: rows flagged possible_leak; ``resolved``: ZEGO confirmed them gone (slot freed);
    ``waiting``: not due yet, or no instance id is known to ask about; ``failed``: ZEGO could not
    be asked or refused, retried after a backoff; ``leaked``: past the give-up time.
    """

    examined: int = 0
    resolved: int = 0
    waiting: int = 0
    failed: int = 0
    leaked: int = 0


@dataclass
class _Backoff:
    attempts: int = 0
    next_at: float = 0.0


@dataclass
class _Tally:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


class LeakTracker:
    """Retries possible leaks until ZEGO confirms them gone (module docstring).

    The reaper runs :meth:`run_once` on every pass; callbacks that reveal an orphan's instance id
    call :meth:`adopt_orphan`, and one that reports an instance deleted calls :meth:`confirm_gone`.
    Backoff state lives in memory: after a restart every possible leak is tried once at once.
    """

    def __init__(
        self,
        sessions: SessionService,
        policy: LeakPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._ledger = sessions.ledger
        self.policy = policy or LeakPolicy()
        self._clock = clock
        self._backoff: dict[str, _Backoff] = {}
        self._reported: set[str] = set()

    def given_up(self, record: SessionRecord) -> bool:
        """Whether the give-up time has passed for this possible leak."""
        ended = record.ended_at if record.ended_at is not None else record.updated_at
        return self._clock() - ended >= self.policy.give_up_seconds

    async def run_once(self) -> LeakReport:
        """One pass: try every possible leak that is due; report those past the give-up time."""
        rows = await self._ledger.possible_leaks()
        live = {r.session_id for r in rows}
        self._backoff = {sid: b for sid, b in self._backoff.items() if sid in live}
        self._reported &= live
        tally = _Tally()
        for record in rows:
            tally.add(await self._one(record))
        report = LeakReport(examined=len(rows), **tally.counts)
        if report.resolved or report.failed:
            log.info("leak pass: %s", report)
        return report

    async def _one(self, record: SessionRecord) -> str:
        sid = record.session_id
        if self.given_up(record):
            if sid not in self._reported:
                self._reported.add(sid)
                where = f"{record.kind.value}, room {record.room_id}, agent user {record.agent_user_id}"
                iid = record.instance_id or "unknown"
                log.error(
                    "leak: session %s (%s, instance %s) was never confirmed gone at ZEGO; giving up",
                    sid,
                    where,
                    iid,
                    extra={"session_id": sid},
                )
            return "leaked"
        backoff = self._backoff.setdefault(sid, _Backoff())
        now = self._clock()
        if now < backoff.next_at:
            return "waiting"
        try:
            gone = await self.check(record)
        except zx.ZegoError as exc:
            backoff.attempts += 1
            backoff.next_at = now + self.policy.delay(backoff.attempts)
            log.warning(
                "possible leak %s: ZEGO %s failed (%s); retrying in %.0f s",
                sid,
                exc.action,
                exc.outcome,
                backoff.next_at - now,
                extra={"session_id": sid},
            )
            return "failed"
        except Exception:
            backoff.attempts += 1
            backoff.next_at = now + self.policy.delay(backoff.attempts)
            log.exception("possible leak %s could not be checked", sid, extra={"session_id": sid})
            return "failed"
        if gone:
            return "resolved"
        backoff.attempts += 1
        backoff.next_at = now + self.policy.delay(backoff.attempts)
        return "waiting"

    async def check(self, record: SessionRecord, *, timeout: float | None = None) -> bool:
        """Try once to confirm the instance gone; True when ZEGO did (the slot is then free).

        ``timeout`` bounds the ZEGO call further than the policy's call timeout.

        Raises:
            ZegoError: ZEGO could not be asked (retried later by :meth:`run_once`).
        """
        instance_id = record.instance_id
        if instance_id is None:
            seen = await self._ledger.instance_ids_seen(record.session_id)
            if not seen:
                return False  # nothing to ask ZEGO about; only a callback can tell
            instance_id = seen[0]
            record = await self._ledger.update_session(
                record.session_id, {"instance_id": instance_id}, self._clock()
            )
        if await self._ledger.has_event(instance_id, EventType.ENDED):
            await self.confirm_gone(record, "ZEGO reported the instance deleted (AgentInstanceDeleted)")
            return True
        try:
            await self._sessions.zego.delete_instance(
                instance_id,
                timeout=min(self.policy.call_timeout_seconds, timeout or math.inf),
            )
        except zx.ZegoInstanceNotFound:
            await self.confirm_gone(record, "ZEGO no longer knows the instance (410001002)")
            return True
        except zx.ZegoStateConflict as exc:
            if exc.code == zx.GRACEFUL_SHUTDOWN_IN_PROGRESS:
                return False  # ZEGO is finishing a graceful delete (<= 120 s): ask again later
            raise
        await self.confirm_gone(record, "the instance was deleted", deleted=True)
        return True

    async def confirm_gone(
        self, record: SessionRecord, detail: str, *, deleted: bool = False
    ) -> SessionRecord:
        """Clear ``possible_leak``: ZEGO confirmed the instance gone, so its slot is free again.

        An orphan the gateway deleted itself is recorded as REAPED_ORPHAN.
        """
        updates: dict[str, object] = {"possible_leak": False, "end_detail": detail[:500]}
        if deleted and record.end_reason is EndReason.CREATE_UNCONFIRMED:
            updates["end_reason"] = EndReason.REAPED_ORPHAN
            updates["end_detail"] = "the unconfirmed create did start an instance; it was deleted"
        resolved = await self._ledger.update_session(record.session_id, updates, self._clock())
        self._backoff.pop(record.session_id, None)
        self._reported.discard(record.session_id)
        sid = record.session_id
        log.info("possible leak %s resolved: %s", sid, detail, extra={"session_id": sid})
        return resolved

    async def adopt_orphan(self, record: SessionRecord, instance_id: str) -> None:
        """A callback revealed the instance of an unconfirmed create: record it and try at once.

        A failure leaves the row to :meth:`run_once`'s retries; it never raises.
        """
        sid = record.session_id
        log.warning("orphan instance found for session %s; deleting it", sid, extra={"session_id": sid})
        try:
            if record.instance_id is None:
                record = await self._ledger.update_session(sid, {"instance_id": instance_id}, self._clock())
            backoff = self._backoff.setdefault(sid, _Backoff())
            try:
                if await self.check(record):
                    return
            except zx.ZegoError as exc:
                log.warning("orphan delete failed (%s); will retry", exc.outcome, extra={"session_id": sid})
            backoff.attempts += 1
            backoff.next_at = self._clock() + self.policy.delay(backoff.attempts)
        except Exception:
            log.exception("orphan of session %s could not be handled; will retry", sid)

    async def resolve_pending(self, record: SessionRecord, cause: str) -> SessionRecord:
        """Settle a PENDING row whose create is not in flight in this process.

        If a callback named the session, ZEGO did create it: the instance id is recorded and the
        row becomes STARTING (the caller asks ZEGO whether it still runs, as for any STARTING
        row). Otherwise nobody can know: the row fails as CREATE_UNCONFIRMED with
        ``possible_leak`` (keeping its slot) and gets its one ``ended`` event.
        """
        seen = await self._ledger.instance_ids_seen(record.session_id)
        if seen:
            started, _ = await self._ledger.start_session(
                record.session_id, at=self._clock(), instance_id=seen[0]
            )
            sid = record.session_id
            log.info("session %s: a callback shows ZEGO created it; adopted", sid, extra={"session_id": sid})
            return started
        detail = "the gateway stopped before ZEGO's answer to the create was recorded"
        failed = await self._sessions.fail_pending(
            record, EndReason.CREATE_UNCONFIRMED, detail, None, cause=cause, possible_leak=True
        )
        where = f"{failed.kind.value}, room {failed.room_id}, agent user {failed.agent_user_id}"
        sid = failed.session_id
        log.warning("possible leak: session %s (%s) unconfirmed", sid, where, extra={"session_id": sid})
        return failed
