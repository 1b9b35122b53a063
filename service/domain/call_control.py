"""In-call control of a running session: steer it (text, speech, interruption, context, listening,
configuration) and read it (the agent's status and context), through the ZEGO port.

Every call resolves the session first: only a STARTING or ACTIVE session reaches ZEGO, only its owner
or an admin may steer it (viewers may read it too), and a session ZEGO no longer knows is recorded as
ended before the caller hears ``FailedPrecondition``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from service.domain import zego_errors as zx
from service.domain.access import check_session_change
from service.domain.model import EndReason, SessionRecord, SessionState
from service.domain.ports import Ledger
from service.domain.zego_config import Message
from service.domain.zego_port import ContextMessages, InstanceUpdate, Listening, Speech, TextTurn, ZegoPort
from service.errors import FailedPrecondition

__all__ = ["CONTROLLABLE", "CallControlMixin"]

T = TypeVar("T")
S = SessionState
CONTROLLABLE = frozenset({S.STARTING, S.ACTIVE})
"""States in which in-call control reaches ZEGO."""

#: ``call(instance_id, timeout)``: one ZEGO request against a running instance.
InstanceCall = Callable[[str, float | None], Awaitable[T]]


class CallControlMixin:
    """``SessionService``'s in-call control (module docstring); the host provides the state."""

    _zego: ZegoPort
    _ledger: Ledger
    _clock: Callable[[], float]

    async def get(self, session_id: str) -> SessionRecord:
        """One session, or ``NotFound`` (the host's)."""
        raise NotImplementedError

    async def mark_ended(
        self, record: SessionRecord, reason: EndReason, cause: str, detail: str = "", code: int | None = None
    ) -> SessionRecord:
        """Record that the instance is gone (the host's)."""
        raise NotImplementedError

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

    async def _budgeted(
        self, session_id: str, call: InstanceCall[T], timeout: float | None, *, changes: bool = True
    ) -> T:
        """``control``, with ``timeout`` (the caller's budget on entry) still counting down when the
        ledger read is done and ZEGO is called."""
        deadline = None if timeout is None else time.monotonic() + timeout

        async def run(instance_id: str) -> T:
            return await call(instance_id, None if deadline is None else deadline - time.monotonic())

        return await self.control(session_id, run, changes=changes)

    # --- steering ---------------------------------------------------------------------------------

    async def update_instance(
        self, session_id: str, update: InstanceUpdate, *, timeout: float | None = None
    ) -> SessionRecord:
        """Change the running instance's LLM/TTS/ASR or user stream; the session afterwards.

        The user stream is the only part of an update the ledger records.
        """

        async def call(instance_id: str, budget: float | None) -> None:
            await self._zego.update_instance(instance_id, update, timeout=budget)

        await self._budgeted(session_id, call, timeout)
        if update.user_stream_id is not None:
            return await self.record_user_stream(session_id, update.user_stream_id)
        return await self.get(session_id)

    async def record_user_stream(self, session_id: str, user_stream_id: str) -> SessionRecord:
        """Record the user stream the agent now plays (after UpdateAgentInstance succeeded)."""
        return await self._ledger.update_session(
            session_id, {"user_stream_id": user_stream_id}, self._clock()
        )

    async def send_text(self, session_id: str, turn: TextTurn, *, timeout: float | None = None) -> int:
        """Feed text to the agent's LLM as if the user said it; ZEGO's Round for the turn."""

        async def call(instance_id: str, budget: float | None) -> int:
            return await self._zego.send_text(instance_id, turn, timeout=budget)

        return await self._budgeted(session_id, call, timeout)

    async def speak(self, session_id: str, speech: Speech, *, timeout: float | None = None) -> int:
        """Make the agent speak; ZEGO's Round for the turn."""

        async def call(instance_id: str, budget: float | None) -> int:
            return await self._zego.speak(instance_id, speech, timeout=budget)

        return await self._budgeted(session_id, call, timeout)

    async def interrupt(self, session_id: str, *, timeout: float | None = None) -> int:
        """Cut the agent's current speech or LLM round; its Round."""

        async def call(instance_id: str, budget: float | None) -> int:
            return await self._zego.interrupt(instance_id, timeout=budget)

        return await self._budgeted(session_id, call, timeout)

    async def reset_context(self, session_id: str, *, timeout: float | None = None) -> None:
        """Clear the agent's LLM context."""

        async def call(instance_id: str, budget: float | None) -> None:
            await self._zego.reset_context(instance_id, timeout=budget)

        await self._budgeted(session_id, call, timeout)

    async def append_context(
        self, session_id: str, messages: Sequence[Message], *, timeout: float | None = None
    ) -> None:
        """Insert messages into the agent's LLM context (no LLM call, no new round)."""

        async def call(instance_id: str, budget: float | None) -> None:
            await self._zego.append_context(instance_id, messages, timeout=budget)

        await self._budgeted(session_id, call, timeout)

    async def start_listening(
        self, session_id: str, listening: Listening, *, timeout: float | None = None
    ) -> int:
        """Walkie-talkie mode: the agent starts listening; the Round."""

        async def call(instance_id: str, budget: float | None) -> int:
            return await self._zego.start_listening(instance_id, listening, timeout=budget)

        return await self._budgeted(session_id, call, timeout)

    async def stop_listening(
        self, session_id: str, listening: Listening, *, timeout: float | None = None
    ) -> int:
        """Walkie-talkie mode: the agent stops listening and answers; the Round."""

        async def call(instance_id: str, budget: float | None) -> int:
            return await self._zego.stop_listening(instance_id, listening, timeout=budget)

        return await self._budgeted(session_id, call, timeout)

    # --- reading ----------------------------------------------------------------------------------

    async def agent_status(self, session_id: str, *, timeout: float | None = None) -> str:
        """The agent's state as ZEGO spells it (IDLE, LISTENING, THINKING, SPEAKING); viewers may ask."""

        async def call(instance_id: str, budget: float | None) -> str:
            return await self._zego.instance_status(instance_id, timeout=budget)

        return await self._budgeted(session_id, call, timeout, changes=False)

    async def context(self, session_id: str, *, timeout: float | None = None) -> ContextMessages:
        """The agent's LLM context; viewers may ask."""

        async def call(instance_id: str, budget: float | None) -> ContextMessages:
            return await self._zego.get_context(instance_id, timeout=budget)

        return await self._budgeted(session_id, call, timeout, changes=False)
