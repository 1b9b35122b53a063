"""One running agent instance and its conversation state machine (spec §5.11-§5.18, §9).

Status is ``IDLE | LISTENING | THINKING | SPEAKING``. Speech is simulated in emulated time: an utterance
speaks for a duration proportional to its text, an LLM turn thinks first, and everything is advanced
lazily by :meth:`Instance.advance` (called before each request and by the background ticker), so no task
per instance is needed and the state is always consistent with the clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .errors import ZegoError
from .validation import Json

__all__ = ["IDLE", "LISTENING", "SPEAKING", "THINKING", "Instance", "Timing", "Utterance"]

IDLE, LISTENING, THINKING, SPEAKING = "IDLE", "LISTENING", "THINKING", "SPEAKING"

VOICE, DIGITAL_HUMAN, LIVE_DIGITAL_HUMAN = "voice", "digital_human", "live_digital_human"

QUEUE_LIMIT = 5
"""Pending Enqueue items per instance (spec §5.11/§5.12: "queue max 5")."""

MAX_MESSAGES = 1000
"""Bound on the stored LLM context, so a long-lived instance cannot grow without limit."""

# Interrupted.Reason values (spec §8.3).
REASON_USER_SPEECH, REASON_LLM, REASON_TTS, REASON_INTERRUPT_API = 1, 2, 3, 4

Emit = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Timing:
    """Emulated durations in real seconds (already multiplied by ``time_scale``)."""

    think: float
    speak_base: float
    speak_per_char: float
    first_frame: float

    def speak(self, text: str) -> float:
        """How long speaking ``text`` takes."""
        return self.speak_base + self.speak_per_char * len(text)


@dataclass
class Utterance:
    """One accepted SendAgentInstanceLLM/TTS request (or a walkie-talkie reply), with its Round."""

    round: int
    text: str
    priority: int
    llm: bool
    add_answer: bool = True
    phase: str = ""
    started_at: float = 0.0
    ends_at: float = 0.0
    spoken: str = ""


@dataclass
class Instance:
    """A running instance. ``kind`` is ``voice``, ``digital_human`` or ``live_digital_human``."""

    instance_id: str
    kind: str
    agent_id: str
    agent_name: str
    user_id: str | None
    room_id: str | None
    agent_stream_id: str | None
    agent_user_id: str | None
    user_stream_id: str | None
    cdn_url: str | None
    llm: Json | None
    tts: Json | None
    asr: Json | None
    callback_config: Json
    max_idle_seconds: int
    disable_tts: bool
    communication_mode: int
    created_at: float
    created_ms: int
    status: str = IDLE
    round: int = 0
    current: Utterance | None = None
    queue: deque[Utterance] = field(default_factory=deque)
    messages: list[Json] = field(default_factory=list)
    listening_round: int | None = None
    # Per user: (last accepted Sequence, whether the last accepted call was StartListening).
    listen_state: dict[str, tuple[int | None, bool]] = field(default_factory=dict)
    shutdown_deadline: float | None = None
    last_tts_at: float = 0.0
    turns: int = 0

    @property
    def shutting_down(self) -> bool:
        """Whether a graceful DeleteAgentInstance is in progress."""
        return self.shutdown_deadline is not None

    def describe(self) -> Json:
        """Envelope facts for callbacks and the admin view (no LLM/TTS keys)."""
        return {
            "AgentInstanceId": self.instance_id,
            "kind": self.kind,
            "AgentId": self.agent_id,
            "Name": self.agent_name,
            "status": self.status,
            "Round": self.round,
            "RoomId": self.room_id,
            "UserId": self.user_id,
            "AgentUserId": self.agent_user_id,
            "AgentStreamId": self.agent_stream_id,
            "UserStreamId": self.user_stream_id,
            "CdnUrl": self.cdn_url,
            "CallbackConfig": dict(self.callback_config),
            "shutting_down": self.shutting_down,
            "queue_length": len(self.queue),
            "message_count": len(self.messages),
        }

    def add_message(self, role: str, content: str) -> None:
        """Append to the LLM context, dropping the oldest beyond :data:`MAX_MESSAGES`."""
        self.messages.append({"Role": role, "Content": content})
        del self.messages[:-MAX_MESSAGES]

    # --- status ---------------------------------------------------------------------------------

    def _set_status(self, status: str, round_: int, emit: Emit) -> None:
        if status != self.status or round_ != self.round:
            self.status, self.round = status, round_
            emit("AgentInstanceStatus", {"Status": status, "Round": round_})

    def _start(self, utt: Utterance, now: float, timing: Timing, emit: Emit) -> None:
        self.current = utt
        utt.started_at = now
        if utt.llm:
            utt.phase, utt.ends_at = THINKING, now + timing.think
        else:
            utt.phase, utt.ends_at, utt.spoken = SPEAKING, now + timing.speak(utt.text), utt.text
        self._set_status(utt.phase, utt.round, emit)

    def _cut(self, reason: int, now: float, emit: Emit) -> int | None:
        """Interrupt the current utterance (spec §9: the round ends immediately)."""
        cur = self.current
        if cur is None:
            return None
        played = ""
        if cur.phase == SPEAKING and cur.spoken and cur.ends_at > cur.started_at:
            # PlayedText: the share of the text already spoken when cut off.
            fraction = min(1.0, max(0.0, (now - cur.started_at) / (cur.ends_at - cur.started_at)))
            played = cur.spoken[: int(len(cur.spoken) * fraction)]
        self.current = None
        emit("Interrupted", {"Round": cur.round, "Reason": reason, "PlayedText": played})
        return cur.round

    # --- requests -------------------------------------------------------------------------------

    def speak(
        self,
        *,
        text: str,
        llm: bool,
        priority: int,
        enqueue: bool,
        add_answer: bool,
        new_round: Callable[[], int],
        now: float,
        timing: Timing,
        emit: Emit,
    ) -> int:
        """Accept a SendAgentInstanceLLM/TTS request; returns its Round.

        Priority rules (the official matrix is only an image, so this is [INFER] from the scenarios):
        a higher priority interrupts what is playing and plays now (queued items stay queued); the same
        priority with ClearAndInterrupt clears the queue and plays now; Enqueue, or a lower priority, waits
        in the queue (at most 5 pending, ordered by priority then arrival), beyond which it is refused.
        """
        cur = self.current
        preempt = cur is None or priority > cur.priority or (priority == cur.priority and not enqueue)
        if not preempt and len(self.queue) >= QUEUE_LIMIT:
            raise ZegoError(
                errors.SEND_TTS_FAILED,
                f"the instance already has {QUEUE_LIMIT} pending items queued; retry later or use "
                "ClearAndInterrupt",
            )
        utt = Utterance(round=new_round(), text=text, priority=priority, llm=llm, add_answer=add_answer)
        if preempt:
            if cur is not None:
                if priority == cur.priority:
                    self.queue.clear()
                self._cut(REASON_LLM if llm else REASON_TTS, now, emit)
            self._start(utt, now, timing, emit)
        else:
            index = next((i for i, q in enumerate(self.queue) if q.priority < priority), len(self.queue))
            self.queue.insert(index, utt)
        return utt.round

    def interrupt(self, new_round: Callable[[], int], now: float, emit: Emit) -> int:
        """InterruptAgentInstance: cut speech/thinking/listening, clear the queue, go IDLE."""
        self.queue.clear()
        round_ = self._cut(REASON_INTERRUPT_API, now, emit) or self.listening_round or new_round()
        self.listening_round = None
        self._set_status(IDLE, round_, emit)
        return round_

    def start_listening(self, round_: int, now: float, emit: Emit) -> None:
        """Walkie-talkie StartListening: the user talks, so whatever the agent says is cut."""
        self.queue.clear()
        self._cut(REASON_USER_SPEECH, now, emit)
        self.listening_round = round_
        self._set_status(LISTENING, round_, emit)

    def stop_listening(
        self, user_id: str, new_round: Callable[[], int], now: float, timing: Timing, emit: Emit
    ) -> int:
        """Walkie-talkie StopListening: the agent answers what was said, in the listening round."""
        round_ = self.listening_round if self.listening_round is not None else new_round()
        self.listening_round = None
        heard = "(emulated speech)"
        emit("ASRResult", {"UserId": user_id, "Round": round_, "Text": heard})
        self.add_message("user", heard)
        self._start(Utterance(round=round_, text=heard, priority=1, llm=True), now, timing, emit)
        return round_

    # --- time -----------------------------------------------------------------------------------

    def advance(self, now: float, timing: Timing, emit: Emit) -> None:
        """Run every transition due by ``now``, each at the emulated time it was due."""
        while (cur := self.current) is not None and cur.ends_at <= now:
            t = cur.ends_at
            if cur.phase == THINKING:
                answer = f"Emulated answer to: {cur.text[:200]}"
                emit("LLMResult", {"Round": cur.round, "Text": answer})
                if cur.add_answer:
                    self.add_message("assistant", answer)
                if not self.disable_tts:
                    cur.phase, cur.started_at, cur.spoken = SPEAKING, t, answer
                    cur.ends_at = t + timing.speak(answer)
                    self._set_status(SPEAKING, cur.round, emit)
                    continue
            self.current = None
            self.turns += 1
            if self.queue:
                # Queued items play back to back: the status stays SPEAKING and only the Round changes.
                self._start(self.queue.popleft(), t, timing, emit)
            else:
                self._set_status(IDLE, cur.round, emit)

    def latency_data(self, timing: Timing) -> Json | None:
        """``AgentInstanceDeleted.Data.LatencyData``: averages of the simulated turns (none if no turn)."""
        if self.turns == 0:
            return None
        ttft, first_frame = int(timing.think * 1000), int(timing.first_frame * 1000)
        return {
            "LLMTTFT": ttft,
            "LLMTPS": 25.0,
            "TTSAudioFirstFrameTime": first_frame,
            "TotalCost": ttft + first_frame,
        }
