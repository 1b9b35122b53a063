"""What an instance is saying or hearing: one Round's utterance and its phases (spec §9).

An utterance is one accepted SendAgentInstanceLLM/TTS request, a walkie-talkie reply, or a simulated user
turn. It moves through phases; the instance's public ``Status`` changes only on entering THINKING and
SPEAKING, because the canonical orders in spec §9 have no status while the user speaks or ASR runs:

=============  ===========================================  ==========================================
Phase          Ends with                                    Then
=============  ===========================================  ==========================================
USER_SPEECH    UserSpeakAction SPEAK_END (+ UserAudioData)  ASR, for ``asr_ms``
ASR            ASRResult                                    THINKING, for ``ttft_ms``
THINKING       LLMResult per sentence                       FIRST_FRAME for ``first_frame_ms`` (or IDLE
                                                            with DisableTTS)
FIRST_FRAME    (status still THINKING)                      SPEAKING (+ AgentInstanceMetaInfo)
SPEAKING       end of speech                                the next queued utterance, or IDLE
=============  ===========================================  ==========================================
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from .latency import TurnLatency

__all__ = [
    "ASR",
    "FIRST_FRAME",
    "SPEAKING",
    "THINKING",
    "USER_AUDIO_MIN_MS",
    "USER_SPEECH",
    "Utterance",
    "answer_sentences",
    "user_audio",
]

USER_SPEECH, ASR, THINKING, FIRST_FRAME, SPEAKING = (
    "USER_SPEECH",
    "ASR",
    "THINKING",
    "FIRST_FRAME",
    "SPEAKING",
)

USER_AUDIO_MIN_MS = 1000
"""UserAudioData is not sent for a user turn shorter than 1 s (spec §8.3)."""

_AUDIO_SAMPLE_RATE = 16000
# One second of 16-bit mono silence: the "first 1-1.5 s of the turn" (spec §8.3), encoded once.
_SILENCE_B64 = base64.b64encode(bytes(2 * _AUDIO_SAMPLE_RATE)).decode()


@dataclass
class Utterance:
    """One Round's content and where it is in its phases (real monotonic and emulated Unix ms times)."""

    round: int
    text: str
    priority: int
    llm: bool
    add_answer: bool = True
    user_id: str | None = None
    """Set for a simulated user turn: whose speech it is."""
    latency: TurnLatency | None = None
    speech_ms: int = 0
    """How long the user speaks (user turns only)."""
    phase: str = ""
    started_at: float = 0.0
    ends_at: float = 0.0
    started_ms: int = 0
    ends_ms: int = 0
    cost_from_ms: int = 0
    """Where ``LatencyData.TotalCost`` starts: SPEAK_END for user speech, the start otherwise."""
    spoken: str = ""
    """What is being (or will be) said aloud, for Interrupted.PlayedText."""

    @property
    def is_user_turn(self) -> bool:
        """Whether this is the simulated user's turn (rather than an API-driven utterance)."""
        return self.user_id is not None


def answer_sentences(question: str) -> list[str]:
    """The emulated LLM's answer, as the sentences LLMResult carries one by one."""
    # Strip ASCII and CJK full-width sentence ends, so the answer does not end in doubled punctuation.
    snippet = " ".join(question.split())[:200].rstrip(".!?\u3002\uff01\uff1f") or "(silence)"
    return [f"You said: {snippet}.", "This is an emulated answer."]


def user_audio(user_id: str, round_: int) -> dict[str, object]:
    """``UserAudioData.Data``: one second of 16 kHz PCM silence (the emulator has no real audio)."""
    return {
        "UserId": user_id,
        "Round": round_,
        "SampleRate": _AUDIO_SAMPLE_RATE,
        "Format": "pcm",
        "Audio": _SILENCE_B64,
    }
