"""Callback ingestion: verify, dedupe, store, then apply to the session (spec §8).

ZEGO's signature covers only (CallbackSecret, Timestamp, Nonce), not the body, so three more
checks guard the body: the timestamp must be within the skew window, a (Nonce, Signature) pair
seen before with a *different* body is a replay (the ledger remembers pairs for twice the skew,
so a restart forgets none), and only events whose every value passes spec §8/§10's types and
ranges (``service.domain.callback_schema``) are stored. The same pair with the same body is ZEGO
retrying, which is acknowledged and stored once.

The caller (the HTTP handler) answers 2xx only for ``accepted`` and ``duplicate``: both mean the
event is durably stored, so ZEGO's retries cover any failure before that point.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from service import tracing
from service.config import CallbackSettings
from service.domain.callback_schema import CallbackError, Problem, check_values, parse_body
from service.domain.event_log import EventLog
from service.domain.events import EventType, NewEvent, normalize_callback
from service.domain.model import SLOT_HOLDING_STATES, SessionRecord, SessionState
from service.domain.ports import DuplicateEvent, Ledger, TransitionConflict, UnstorableValue
from service.domain.sessions import end_reason_for_zego_code

__all__ = ["CallbackIngestor", "IngestOutcome", "IngestResult", "OrphanHandler", "SignatureCheck"]

SignatureCheck = Callable[[str, str, str], bool]
"""``(timestamp, nonce, signature) -> valid``: ZEGO's callback signature check, secret bound."""

log = logging.getLogger("agentgw.callbacks")


class IngestResult(enum.StrEnum):
    """What happened to one callback (the metrics label ``result``)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"
    REPLAYED = "replayed"
    MALFORMED = "malformed"

    @property
    def stored(self) -> bool:
        """Whether the event is durably stored (so ZEGO may stop retrying)."""
        return self in (IngestResult.ACCEPTED, IngestResult.DUPLICATE)


@dataclass(frozen=True)
class IngestOutcome:
    """The result, ZEGO's event name (bounded: "unknown" otherwise), a reason for the caller and
    the logs, and for a malformed body the kind of problem (a bounded metrics label)."""

    result: IngestResult
    event: str = "unknown"
    detail: str = ""
    problem: str = ""


def _malformed(event: str, error: CallbackError) -> IngestOutcome:
    return IngestOutcome(IngestResult.MALFORMED, event, str(error), error.problem.value)


_NONCE_GROUP_MAX = 64


class _NonceBook:
    """The ledger's (Nonce, Signature) records, written in groups.

    Callbacks that arrive together share one transaction (one commit instead of one each: about
    30 instead of 130 us a callback here), as EventLog.append's group commit does for events. The
    record is durable before its callback is answered, so a restart forgets no acknowledged pair.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._pending: list[tuple[tuple[str, str, str, float], asyncio.Future[str]]] = []
        self._flusher: asyncio.Future[None] | None = None

    async def remember(self, nonce: str, signature: str, digest: str, expires_at: float) -> str:
        """Record the pair unless it is on record; the digest on record."""
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append(((nonce, signature, digest, expires_at), waiter))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await waiter

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending[:_NONCE_GROUP_MAX], self._pending[_NONCE_GROUP_MAX:]
            try:
                digests = await self._ledger.remember_callbacks([pair for pair, _ in group])
            except asyncio.CancelledError:  # shutdown: nobody may wait forever
                for _, waiter in group + self._pending:
                    waiter.cancel()
                self._pending = []
                raise
            except Exception as exc:
                for _, waiter in group:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for (_, waiter), digest in zip(group, digests, strict=True):
                if not waiter.done():
                    waiter.set_result(digest)


VERIFICATION_FIELDS = ("Signature", "Nonce")
"""Dropped from the stored raw body once verified: replay protection keeps what it needs itself,
and a stored pair must never be replayable by whoever can read the event log."""


def stored_body(data: dict[str, Any]) -> str:
    """The callback body as it is kept with its event: everything but its Signature and Nonce."""
    kept = {key: value for key, value in data.items() if key not in VERIFICATION_FIELDS}
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":"))


class OrphanHandler(Protocol):
    """What ingest asks of the leak tracker when a callback settles a possible leak
    (``service.domain.leaks.LeakTracker`` implements it; it is what talks to ZEGO)."""

    async def confirm_gone(
        self, record: SessionRecord, detail: str, *, deleted: bool = False
    ) -> SessionRecord:
        """Clear ``possible_leak``: ZEGO confirmed the instance gone."""

    async def adopt_orphan(self, record: SessionRecord, instance_id: str) -> None:
        """Record the instance a callback revealed for an unconfirmed create, and delete it."""


class CallbackIngestor:
    """Turns raw callback bodies into stored events and session state changes.

    Args:
        ledger: matches callbacks to sessions, remembers (Nonce, Signature) pairs, counts exceptions.
        events: where events are stored and published, and session transitions made.
        leaks: settles sessions flagged ``possible_leak`` that a callback shows the fate of.
        verify_signature: checks a callback's (Timestamp, Nonce, Signature) against ZEGO's
            CallbackSecret (bound by the ZEGO adapter, so the domain never holds the secret); None
            rejects every callback.
        settings: how far a callback's Timestamp may be from now.
    """

    def __init__(
        self,
        ledger: Ledger,
        events: EventLog,
        leaks: OrphanHandler,
        verify_signature: SignatureCheck | None,
        *,
        settings: CallbackSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        skew_seconds = (settings if settings is not None else CallbackSettings()).skew_seconds
        self._ledger = ledger
        self._events = events
        self._leaks = leaks
        self._verify = verify_signature
        self._skew_ms = skew_seconds * 1000
        # A pair is only accepted while its Timestamp is within the skew of now, and it was first
        # seen within the skew of that Timestamp: after 2 x skew no replay of it can pass anyway.
        self._nonce_ttl = 2 * skew_seconds
        self._nonces = _NonceBook(self._ledger)
        self._clock = clock
        self._background: set[asyncio.Task[None]] = set()

    @tracing.traced_callback  # while tracing is on: a span per callback
    async def ingest(self, body: bytes) -> IngestOutcome:
        """Verify and store one callback body. Never raises for bad input: it says why instead."""
        now = self._clock()
        try:
            data, raw = parse_body(body)
        except CallbackError as exc:
            return _malformed("unknown", exc)
        name = data.get("Event")
        event_name = name if isinstance(name, str) and name.isalnum() and len(name) <= 40 else "unknown"
        signature, nonce, timestamp = data.get("Signature"), data.get("Nonce"), data.get("Timestamp")
        if not isinstance(signature, str) or not isinstance(nonce, str | int) or isinstance(timestamp, bool):
            return IngestOutcome(
                IngestResult.BAD_SIGNATURE, event_name, "Signature, Nonce or Timestamp missing"
            )
        stamp = str(timestamp) if isinstance(timestamp, int | str) else ""
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 19):
            return IngestOutcome(IngestResult.BAD_SIGNATURE, event_name, "Timestamp is not an integer")
        if self._verify is None:
            return IngestOutcome(IngestResult.BAD_SIGNATURE, event_name, "no CallbackSecret is configured")
        if not self._verify(stamp, str(nonce), signature):
            return IngestOutcome(IngestResult.BAD_SIGNATURE, event_name, "signature mismatch")
        if abs(now * 1000 - int(stamp)) > self._skew_ms:
            return IngestOutcome(IngestResult.STALE, event_name, "Timestamp outside the allowed skew")
        try:
            check_values(data, raw)
            event = normalize_callback(data, stored_body(data), now)
        except CallbackError as exc:
            return _malformed(event_name, exc)
        digest = hashlib.sha256(body).hexdigest()
        seen = await self._nonces.remember(str(nonce), signature.lower(), digest, now + self._nonce_ttl)
        if seen != digest:
            return IngestOutcome(
                IngestResult.REPLAYED, event_name, "Nonce and Signature reused with another body"
            )
        try:
            stored = await self._apply(event)
        except UnstorableValue as exc:
            # parse_body and normalize_callback should have refused it: keep the reason.
            log.warning(
                "callback value cannot be stored", extra={"zego_event": event_name, "error": str(exc)}
            )
            return IngestOutcome(
                IngestResult.MALFORMED, event_name, "a value cannot be stored", Problem.UNSTORABLE.value
            )
        return IngestOutcome(IngestResult.ACCEPTED if stored else IngestResult.DUPLICATE, event_name)

    async def _match(self, event: NewEvent) -> SessionRecord | None:
        assert event.instance_id is not None
        record = await self._ledger.find_by_instance_id(event.instance_id)
        if record is None and event.agent_user_id and event.room_id:
            # ZEGO's answer to our create may not be recorded yet (or was lost in a crash): the
            # generated agent user id is unique per session, so it names the session.
            record = await self._ledger.find_by_agent_user(event.room_id, event.agent_user_id)
        return record

    async def _apply(self, event: NewEvent) -> bool:
        """Store the event and update the session; False for a duplicate."""
        record = await self._match(event)
        if record is not None:
            tracing.link_session(record.trace_parent, record.session_id)
        if record is None:
            # Kept, not dropped: the session's create may still be recorded; it claims these later.
            return await self._events.append(event) is not None
        event = replace(
            event,
            session_id=record.session_id,
            labels=record.labels,
            owner=record.owner,
            agent_id=event.agent_id or record.agent_id,
            room_id=event.room_id or record.room_id,
        )
        adopting = record.terminal and record.instance_id is None and record.possible_leak
        if event.event_type is EventType.ENDED:
            return await self._ended(record, event)
        if record.terminal:
            # After the session's terminal event nothing more is delivered for it.
            stored = await self._events.append(replace(event, hidden=True)) is not None
            if stored and adopting and event.event_type is EventType.CREATED:
                self._adopt_orphan(record, event)
            return stored
        if event.event_type is EventType.CREATED and record.state is SessionState.STARTING:
            return await self._activate(record, event)
        stored = await self._events.append(event) is not None
        if stored and event.event_type is EventType.EXCEPTION:
            await self._ledger.record_exception(
                record.session_id,
                int(event.data.get("code", 0)),
                str(event.data.get("message", "")),
                self._clock(),
            )
        return stored

    async def _ended(self, record: SessionRecord, event: NewEvent) -> bool:
        code = int(event.data.get("zego_code") or 0)
        if record.terminal or record.state is SessionState.PENDING:
            # The session already has its one terminal event (or cannot end before it started):
            # keep ZEGO's for dedupe and audit, deliver nothing.
            stored = await self._events.append(replace(event, hidden=True)) is not None
            known = record.instance_id
            if stored and record.terminal and record.possible_leak and known in (None, event.instance_id):
                # ZEGO says the instance we could not confirm is gone: its slot is free again.
                try:
                    await self._leaks.confirm_gone(
                        record, "ZEGO reported the instance deleted (AgentInstanceDeleted)"
                    )
                except Exception:  # the event is stored; the leak tracker finds it next pass
                    log.exception("could not clear possible_leak", extra={"session_id": record.session_id})
            return stored
        reason = end_reason_for_zego_code(code)
        if code == 0 and record.end_reason is not None:
            reason = record.end_reason  # e.g. MAX_DURATION: our delete, ZEGO's confirmation
        ended = replace(event, data={**event.data, "reason": reason.value})
        try:
            await self._events.transition_with_event(
                record.session_id,
                SessionState.ENDED,
                expected=SLOT_HOLDING_STATES - {SessionState.PENDING},
                cause="zego_deleted",
                event=ended,
                updates={"end_reason": reason, "zego_code": code or None, "possible_leak": False},
            )
            return True
        except DuplicateEvent:
            return False
        except TransitionConflict:
            # Our own end won the race; it wrote the terminal event.
            return await self._events.append(replace(event, hidden=True)) is not None

    async def _activate(self, record: SessionRecord, event: NewEvent) -> bool:
        try:
            await self._events.transition_with_event(
                record.session_id,
                SessionState.ACTIVE,
                expected=frozenset({SessionState.STARTING}),
                cause="zego_created_callback",
                event=event,
            )
            return True
        except DuplicateEvent:
            return False
        except TransitionConflict:
            return await self._events.append(event) is not None

    def _adopt_orphan(self, record: SessionRecord, event: NewEvent) -> None:
        """A create we could not confirm did make an instance: now that we know it, delete it.

        Runs in the background so ZEGO gets its answer without waiting for our delete; if the
        delete fails, the leak tracker retries it until ZEGO confirms the instance gone.
        """
        task = asyncio.create_task(self._leaks.adopt_orphan(record, event.instance_id or ""))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
