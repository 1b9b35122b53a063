"""Simulated conversations: user turns (admin-driven or automatic) and reported runtime exceptions.

The instance state machine (:mod:`.instance`) does the sequencing; this module decides *when* a user speaks,
draws the turn's latencies and allocates its Round. A user turn's Round is taken when speech begins (spec §9).
"""

from __future__ import annotations

from typing import Protocol

from .config import EmulatorConfig
from .instance import Instance
from .latency import LatencySampler
from .timeline import Timing
from .validation import Json

__all__ = ["EXCEPTION_MESSAGES", "Conversation", "ConversationHost", "TurnRefused"]

DEFAULT_USER_ID = "user"
"""Who speaks in a turn on an instance created without a UserId (e.g. a live instance on CDN)."""

EXCEPTION_MESSAGES: dict[int, str] = {
    1001: "AI Agent error",
    1004: "VAD detected speech but ASR returned no text",
    1101: "IM error",
    1201: "RTC error",
    1202: "the user has been absent from the room for longer than MaxIdleTime",
    1203: "the agent was kicked out of the room",
    1204: "the agent failed to log in to the room",
    1205: "the agent was disconnected from the room",
    1206: "the agent failed to publish its stream",
    1207: "the agent failed to play the user's stream",
    1208: "failed to send a room message",
    2101: "ASR error",
    2201: "LLM error",
    2202: "LLM parameter error",
    2203: "The API key in the request is missing or invalid",
    2204: "LLM concurrency limit reached",
    2205: "the LLM account is in arrears",
    2206: "LLM content moderation failed",
    2301: "TTS error",
    2302: "TTS parameter error",
    2303: "TTS authentication failed",
    2304: "TTS concurrency limit reached",
    2305: "the TTS account is in arrears",
}
"""Spec §7.3 runtime codes with a default ``Message`` (2203 uses the docs' own example text)."""


class TurnRefused(Exception):
    """A simulated turn or exception that cannot happen now; ``status`` is the admin HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ConversationHost(Protocol):
    """What a conversation needs of the state it runs on (:class:`~.state.EmulatorState` is one).

    Declared here, so that the state imports this module and this module does not import the state.
    """

    config: EmulatorConfig
    instances: dict[str, Instance]
    latencies: LatencySampler
    timing: Timing

    def new_round(self) -> int:
        """A fresh Round for a turn."""

    def now(self) -> float:
        """The current emulated time."""


class Conversation:
    """Drives simulated speech on the instances of one :class:`~.state.EmulatorState`.

    Callers run ``state.advance()`` first (as every request does), so a turn starts on an up-to-date machine.
    """

    def __init__(self, state: ConversationHost) -> None:
        self._state = state
        self._auto_count = 0

    def _instance(self, instance_id: str) -> Instance:
        inst = self._state.instances.get(instance_id)
        if inst is None:
            raise TurnRefused(404, f"agent instance {instance_id} does not exist")
        return inst

    def user_turn(
        self,
        instance_id: str,
        text: str,
        *,
        user_id: str | None = None,
        speech_ms: int | None = None,
        asr_ms: int | None = None,
        ttft_ms: int | None = None,
        first_frame_ms: int | None = None,
    ) -> Json:
        """The user says ``text`` to the instance now; returns the turn's Round and latencies.

        Raises:
            TurnRefused: unknown instance (404); shutting down, live, walkie-talkie, or the agent says
                something user speech cannot interrupt (409).
        """
        inst = self._instance(instance_id)
        if inst.shutting_down:
            raise TurnRefused(409, f"agent instance {instance_id} is shutting down")
        refusal = inst.voice_refusal()
        if refusal is not None:
            raise TurnRefused(409, refusal)
        state = self._state
        latency = state.latencies.sample(asr_ms=asr_ms, ttft_ms=ttft_ms, first_frame_ms=first_frame_ms)
        speech = state.timing.speech_ms(text) if speech_ms is None else speech_ms
        user = user_id or inst.user_id or DEFAULT_USER_ID
        round_ = state.new_round()
        inst.user_turn(round_, user, text, speech, latency, state.now())
        return {
            "AgentInstanceId": inst.instance_id,
            "Round": round_,
            "UserId": user,
            "latency": {
                "speech_ms": speech,
                "asr_ms": latency.asr_ms,
                "llm_ttft_ms": latency.ttft_ms,
                "tts_first_frame_ms": latency.first_frame_ms,
            },
        }

    def room_turns(
        self, room_id: str, text: str, *, user_id: str | None = None, **latencies: int | None
    ) -> list[Json]:
        """A user speaks in a room: every instance there (of that user, if given) hears it.

        Raises:
            TurnRefused: no such instance (404), or the first refusal if none could take the turn (409).
        """
        targets = [
            i
            for i in self._state.instances.values()
            if i.room_id == room_id and (user_id is None or i.user_id == user_id)
        ]
        if not targets:
            raise TurnRefused(
                404, f"no agent instance in room {room_id}" + (f" for user {user_id}" if user_id else "")
            )
        turns: list[Json] = []
        refused: TurnRefused | None = None
        for inst in targets:
            try:
                turns.append(self.user_turn(inst.instance_id, text, user_id=user_id, **latencies))
            except TurnRefused as exc:
                refused = refused or exc
        if not turns and refused is not None:
            raise refused
        return turns

    def report_exception(self, instance_id: str, code: int, message: str | None, round_: int | None) -> Json:
        """The instance reports an ``Exception`` callback (spec §7.3); nothing else changes."""
        inst = self._instance(instance_id)
        text = message if message is not None else EXCEPTION_MESSAGES.get(code, "emulated exception")
        return inst.report_exception(code, text, round_, self._state.now())

    def auto_turns(self, now: float) -> None:
        """Start the due automatic turns: each voice/digital-human instance at rest, once per interval."""
        config = self._state.config
        if config.auto_turn_interval_seconds is None:
            return
        for inst in list(self._state.instances.values()):
            # A busy instance gets its turn as soon as it is at rest again, so turns never overlap.
            if now < inst.next_auto_turn_at or inst.shutting_down or not inst.at_rest:
                continue
            if inst.voice_refusal() is not None:
                continue
            utterances = config.auto_turn_utterances
            text = utterances[self._auto_count % len(utterances)]
            self._auto_count += 1
            self.user_turn(inst.instance_id, text)
            inst.next_auto_turn_at = now + config.scaled(config.auto_turn_interval_seconds)
