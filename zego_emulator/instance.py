"""One running agent instance and its conversation state machine (spec §5.11-§5.18, §9).

Status is ``IDLE | LISTENING | THINKING | SPEAKING``. Everything happens in emulated time: an utterance
moves through its phases (see :mod:`.utterance`) at times computed when each phase starts, and
:meth:`Instance.advance` (called before each request and by the background ticker) runs every transition
that is due, each stamped at the emulated time it was due. No task per instance is needed and the state is
always consistent with the clock. Every event leaves through :attr:`Instance.emit` with its emulated Unix ms.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .errors import ZegoError
from .latency import LatencyStats, TurnLatency
from .timeline import SimClock, Timing
from .utterance import (
    ASR,
    FIRST_FRAME,
    SPEAKING,
    THINKING,
    USER_AUDIO_MIN_MS,
    USER_SPEECH,
    Utterance,
    answer_sentences,
    user_audio,
)
from .validation import Json

__all__ = ["IDLE", "LISTENING", "SPEAKING", "THINKING", "Emit", "Instance"]

IDLE, LISTENING = "IDLE", "LISTENING"

VOICE, DIGITAL_HUMAN, LIVE_DIGITAL_HUMAN = "voice", "digital_human", "live_digital_human"

QUEUE_LIMIT = 5
"""Pending Enqueue items per instance (spec §5.11/§5.12: "queue max 5")."""

MAX_MESSAGES = 1000
"""Bound on the stored LLM context, so a long-lived instance cannot grow without limit."""

MEDIUM, HIGH = 1, 2
"""Priority ranks (schema.PRIORITIES): user speech interrupts Medium and below, never High (spec §5.12)."""

# Interrupted.Reason values (spec §8.3).
REASON_USER_SPEECH, REASON_LLM, REASON_TTS, REASON_INTERRUPT_API = 1, 2, 3, 4

Emit = Callable[[str, dict[str, Any], int], None]
"""``(Event, Data, Timestamp)``: one event of this instance, stamped in emulated Unix ms."""


@dataclass(kw_only=True)
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
    emit: Emit = field(repr=False)
    timing: Timing
    clock: SimClock = field(repr=False)
    created_due: float | None = None
    """When ``AgentInstanceCreated`` is due (real monotonic); None once it was emitted."""
    interrupt_mode: int = 0
    meta_keys: list[str] = field(default_factory=list)
    """``AdvancedConfig.LLMMetaInfo.SendMetaKeys``: AgentInstanceMetaInfo is sent only when non-empty."""
    tokens_per_second: float = 25.0
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
    next_auto_turn_at: float = 0.0
    latency: LatencyStats = field(default_factory=LatencyStats)

    @property
    def shutting_down(self) -> bool:
        """Whether a graceful DeleteAgentInstance is in progress."""
        return self.shutdown_deadline is not None

    @property
    def at_rest(self) -> bool:
        """Nothing said, heard, queued or listened to: the next activity starts a new emulated episode."""
        return self.current is None and not self.queue and self.listening_round is None

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

    # --- events and status ------------------------------------------------------------------------

    def _emit(self, event: str, data: Json, ms: int) -> None:
        if self.created_due is not None:
            # AgentInstanceCreated is always an instance's first event, even if it was not due yet.
            self._announce(ms)
        self.emit(event, data, self.clock.stamp(ms))

    def _announce(self, ms: int) -> None:
        self.created_due = None
        stamped = self.clock.stamp(ms)
        self.emit("AgentInstanceCreated", {"CreatedTimestamp": stamped}, stamped)

    def _touch(self, now: float) -> int:
        """An outside action at ``now``: begin a new emulated episode if at rest; returns its emulated ms."""
        if self.at_rest:
            self.clock.sync(now)
        return max(self.clock.at(now), self.clock.last_ms)

    def _set_status(self, status: str, round_: int, ms: int) -> None:
        if status != self.status or round_ != self.round:
            self.status, self.round = status, round_
            self._emit("AgentInstanceStatus", {"Status": status, "Round": round_}, ms)

    def _phase(self, utt: Utterance, phase: str, t: float, ms: int, duration_ms: int) -> None:
        utt.phase, utt.started_at, utt.started_ms = phase, t, ms
        utt.ends_at, utt.ends_ms = t + self.timing.real(duration_ms), ms + duration_ms
        if phase in (THINKING, SPEAKING):
            self._set_status(phase, utt.round, ms)

    def _start(self, utt: Utterance, t: float, ms: int) -> None:
        self.current = utt
        utt.cost_from_ms = ms
        if utt.llm:
            assert utt.latency is not None
            self._phase(utt, THINKING, t, ms, utt.latency.ttft_ms)
        else:
            utt.spoken = utt.text
            self._phase(utt, SPEAKING, t, ms, self.timing.speech_ms(utt.text))

    def _cut(self, reason: int, now: float) -> int | None:
        """Interrupt the current utterance: Interrupted, then IDLE for its round (spec §9: it ends now)."""
        cur = self.current
        if cur is None:
            return None
        ms = max(self.clock.at(now), self.clock.last_ms)
        played = ""
        if cur.phase == SPEAKING and cur.spoken and cur.ends_at > cur.started_at:
            # PlayedText: the share of the text already spoken when cut off.
            fraction = min(1.0, max(0.0, (now - cur.started_at) / (cur.ends_at - cur.started_at)))
            played = cur.spoken[: int(len(cur.spoken) * fraction)]
        self.current = None
        self._emit("Interrupted", {"Round": cur.round, "Reason": reason, "PlayedText": played}, ms)
        if self.round == cur.round and self.status != IDLE:
            # Only a round that reached THINKING/SPEAKING has a status to end; a user turn cut during its
            # speech or ASR never had one.
            self._set_status(IDLE, cur.round, ms)
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
        latency: TurnLatency,
    ) -> int:
        """Accept a SendAgentInstanceLLM/TTS request; returns its Round.

        Priority rules (the official matrix is only an image, so this is [INFER] from the scenarios):
        a higher priority interrupts what is playing and plays now (queued items stay queued); the same
        priority with ClearAndInterrupt clears the queue and plays now; Enqueue, or a lower priority, waits
        in the queue (at most 5 pending, ordered by priority then arrival), beyond which it is refused.
        """
        ms = self._touch(now)
        cur = self.current
        preempt = cur is None or priority > cur.priority or (priority == cur.priority and not enqueue)
        if not preempt and len(self.queue) >= QUEUE_LIMIT:
            raise ZegoError(
                errors.SEND_TTS_FAILED,
                f"the instance already has {QUEUE_LIMIT} pending items queued; retry later or use "
                "ClearAndInterrupt",
            )
        utt = Utterance(
            round=new_round(), text=text, priority=priority, llm=llm, add_answer=add_answer, latency=latency
        )
        if preempt:
            if cur is not None:
                if priority == cur.priority:
                    self.queue.clear()
                self._cut(REASON_LLM if llm else REASON_TTS, now)
            self._start(utt, now, ms)
        else:
            index = next((i for i, q in enumerate(self.queue) if q.priority < priority), len(self.queue))
            self.queue.insert(index, utt)
        return utt.round

    def interrupt(self, new_round: Callable[[], int], now: float) -> int:
        """InterruptAgentInstance: cut speech/thinking/listening, clear the queue, go IDLE."""
        ms = self._touch(now)
        self.queue.clear()
        round_ = self._cut(REASON_INTERRUPT_API, now) or self.listening_round or new_round()
        self.listening_round = None
        self._set_status(IDLE, round_, ms)
        return round_

    def start_listening(self, round_: int, now: float) -> None:
        """Walkie-talkie StartListening: the user talks, so whatever the agent says is cut."""
        ms = self._touch(now)
        self.queue.clear()
        self._cut(REASON_USER_SPEECH, now)
        self.listening_round = round_
        self._set_status(LISTENING, round_, ms)

    def stop_listening(
        self, user_id: str, new_round: Callable[[], int], now: float, latency: TurnLatency
    ) -> int:
        """Walkie-talkie StopListening: the agent answers what was said, in the listening round."""
        ms = self._touch(now)
        round_ = self.listening_round if self.listening_round is not None else new_round()
        self.listening_round = None
        heard = "(emulated speech)"
        self._emit("ASRResult", {"UserId": user_id, "Round": round_, "Text": heard}, ms)
        self.add_message("user", heard)
        self._start(Utterance(round=round_, text=heard, priority=MEDIUM, llm=True, latency=latency), now, ms)
        return round_

    def voice_refusal(self) -> str | None:
        """Why simulated user speech cannot start now, or None if it can (checked before a Round is taken)."""
        if self.kind == LIVE_DIGITAL_HUMAN:
            return "a live digital human has no user audio"
        if self.communication_mode == 2:
            return "walkie-talkie mode: the user speaks between StartListening and StopListening"
        cur = self.current
        if cur is not None and not cur.is_user_turn and (self.interrupt_mode == 1 or cur.priority >= HIGH):
            # High priority and AdvancedConfig.InterruptMode=1 are not cut by voice (spec §5.12, §6.9).
            return "the agent is saying something user speech cannot interrupt"
        return None

    def user_turn(
        self, round_: int, user_id: str, text: str, speech_ms: int, latency: TurnLatency, now: float
    ) -> None:
        """Simulated user speech in ``round_`` (spec §9 sequences 1 and 4): barges in on anything running."""
        ms = self._touch(now)
        self._emit("UserSpeakAction", {"UserId": user_id, "Action": "SPEAK_BEGIN", "Round": round_}, ms)
        if self.current is not None:
            # The user took the floor: queued items go too [INFER], as with ClearAndInterrupt.
            self.queue.clear()
            self._cut(REASON_USER_SPEECH, now)
        utt = Utterance(
            round=round_,
            text=text,
            priority=MEDIUM,
            llm=True,
            user_id=user_id,
            latency=latency,
            speech_ms=speech_ms,
        )
        self.current = utt
        self._phase(utt, USER_SPEECH, now, ms, speech_ms)

    def report_exception(self, code: int, message: str, round_: int | None, now: float) -> Json:
        """An ``Exception`` callback (spec §7.3); it reports only, the conversation goes on [INFER]."""
        ms = self._touch(now)
        if round_ is None:
            round_ = self.current.round if self.current is not None else self.round
        data: Json = {"Code": code, "Message": message, "Round": round_}
        self._emit("Exception", data, ms)
        return data

    def deleted(self, code: int, now: float) -> None:
        """Emit ``AgentInstanceDeleted`` with the session's LatencyData averages (spec §10)."""
        ms = self._touch(now)
        data: Json = {"Code": code, "DeletedTimestamp": ms, "LatencyData": self.latency.latency_data()}
        self._emit("AgentInstanceDeleted", data, ms)

    # --- time -----------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Run every transition due by ``now``, each at the emulated time it was due."""
        if self.created_due is not None and now >= self.created_due:
            self._announce(self.clock.at(self.created_due))
        # Bounded: each step moves the current utterance to a later phase or ends it, phases are at most
        # five, and the queue holds at most QUEUE_LIMIT items.
        while (cur := self.current) is not None and cur.ends_at <= now:
            self._step(cur)

    def _step(self, cur: Utterance) -> None:
        t, ms = cur.ends_at, cur.ends_ms
        latency = cur.latency
        if cur.phase == USER_SPEECH:
            assert cur.user_id is not None and latency is not None
            self._emit(
                "UserSpeakAction", {"UserId": cur.user_id, "Action": "SPEAK_END", "Round": cur.round}, ms
            )
            if cur.speech_ms >= USER_AUDIO_MIN_MS:
                self._emit("UserAudioData", user_audio(cur.user_id, cur.round), ms)
            cur.cost_from_ms = ms
            self._phase(cur, ASR, t, ms, latency.asr_ms)
        elif cur.phase == ASR:
            assert latency is not None
            self._emit("ASRResult", {"UserId": cur.user_id, "Round": cur.round, "Text": cur.text}, ms)
            self.add_message("user", cur.text)
            self._phase(cur, THINKING, t, ms, latency.ttft_ms)
        elif cur.phase == THINKING:
            assert latency is not None
            sentences = answer_sentences(cur.text)
            # The emulated LLM has its whole answer at the first token, so every sentence is stamped then.
            for sentence in sentences:
                self._emit("LLMResult", {"Round": cur.round, "Text": sentence}, ms)
            answer = " ".join(sentences)
            if cur.add_answer:
                self.add_message("assistant", answer)
            self.latency.llm_answered(latency.ttft_ms, self.tokens_per_second)
            if self.disable_tts:
                self._finish(cur, t, ms)
                return
            cur.spoken = answer
            self._phase(cur, FIRST_FRAME, t, ms, latency.first_frame_ms)
        elif cur.phase == FIRST_FRAME:
            assert latency is not None
            self.latency.speech_started(latency.first_frame_ms, ms - cur.cost_from_ms)
            self._phase(cur, SPEAKING, t, ms, self.timing.speech_ms(cur.spoken))
            if self.meta_keys:
                # Sent when playback of the LLM content starts (spec §8.3).
                meta = {key: f"emulated-{key}" for key in self.meta_keys}
                self._emit("AgentInstanceMetaInfo", {"Round": cur.round, "MetaInfo": meta}, ms)
        else:
            self._finish(cur, t, ms)

    def _finish(self, cur: Utterance, t: float, ms: int) -> None:
        self.current = None
        if self.queue:
            # Queued items play back to back: the status stays SPEAKING and only the Round changes.
            self._start(self.queue.popleft(), t, ms)
        else:
            self._set_status(IDLE, cur.round, ms)
