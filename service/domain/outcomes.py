"""Bounded vocabularies the domain reports in: how a create ended, what started a turn, which of
ZEGO's latency stages a figure measures.

They are ``StrEnum``s, so a member is its label value and code that passes the plain string (as the
callers of ``session_created`` and ``api_turn`` do) keeps working. ``service.metrics`` derives its
label sets from them: a value added here is pre-initialised at zero and accepted; a value not here
is refused (``ValueError``), so a typo cannot create a new series.
"""

from __future__ import annotations

import enum

__all__ = ["CreateOutcome", "TurnTrigger", "ZegoStage"]


class CreateOutcome(enum.StrEnum):
    """How one CreateSession call ended (the ``outcome`` label of ``agentgw_sessions_created_total``)."""

    CREATED = "created"
    REPLAYED = "replayed"
    """A retry with the same request id: the first call's session is returned."""
    REJECTED_CAPACITY = "rejected_capacity"
    REJECTED_QUOTA = "rejected_quota"
    FAILED_UPSTREAM = "failed_upstream"
    FAILED_UNCONFIRMED = "failed_unconfirmed"
    """ZEGO's answer never arrived: whether an instance exists is unknown."""
    INVALID = "invalid"
    """Refused as malformed. Nothing records it today (bad input is refused before the domain sees
    it); the series stays so the dashboards' queries keep their shape."""


class TurnTrigger(enum.StrEnum):
    """What started a conversational turn whose latency is measured (``trigger`` label)."""

    USER_SPEECH = "user_speech"
    """The user stopped speaking (UserSpeakAction end)."""
    SEND_TEXT = "send_text"
    """SendText: the caller gave the agent's LLM a message."""
    SPEAK = "speak"
    """Speak: the caller had the agent say a text through TTS."""


class ZegoStage(enum.StrEnum):
    """A stage of ZEGO's per-session LatencyData averages (``stage`` label): LLMTTFT,
    TTSAudioFirstFrameTime and TotalCost of AgentInstanceDeleted's ``Data.LatencyData``."""

    LLM_TTFT = "llm_ttft"
    TTS_FIRST_FRAME = "tts_first_frame"
    TOTAL = "total"
