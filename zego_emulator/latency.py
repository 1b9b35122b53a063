"""Per-turn latencies (sampled from configurable distributions) and ``LatencyData`` averages (spec §10).

A turn's latencies are drawn once, when the turn starts, from :class:`~.config.EmulatorConfig`'s means and
jitters with a seedable RNG; a test can also pin them exactly (the admin turn endpoint's ``asr_ms``,
``llm_ttft_ms`` and ``tts_first_frame_ms``). Values are whole emulated milliseconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import EmulatorConfig
from .validation import Json

__all__ = ["LatencySampler", "LatencyStats", "TurnLatency"]

_NORMAL_CLAMP_SIGMAS = 4.0


@dataclass(frozen=True)
class TurnLatency:
    """Emulated milliseconds of one LLM turn's steps."""

    asr_ms: int
    """SPEAK_END -> ASRResult (user turns only)."""
    ttft_ms: int
    """THINKING -> LLMResult (LLM time to first token)."""
    first_frame_ms: int
    """LLMResult -> SPEAKING (first non-silent TTS frame)."""


class LatencySampler:
    """Draws :class:`TurnLatency` values from the configured distributions."""

    def __init__(self, config: EmulatorConfig, rng: random.Random | None = None) -> None:
        self._config = config
        self._rng = rng or random.Random(config.latency_seed)

    def sample(
        self, *, asr_ms: int | None = None, ttft_ms: int | None = None, first_frame_ms: int | None = None
    ) -> TurnLatency:
        """One turn's latencies; a given value is used as is instead of being drawn."""
        c = self._config
        # Always draw all three, so pinning one value does not shift the seeded sequence of the others.
        asr = self._draw(c.asr_latency_ms, c.asr_latency_jitter_ms)
        ttft = self._draw(c.llm_ttft_ms, c.llm_ttft_jitter_ms)
        first_frame = self._draw(c.tts_first_frame_ms, c.tts_first_frame_jitter_ms)
        return TurnLatency(
            asr_ms=asr if asr_ms is None else asr_ms,
            ttft_ms=ttft if ttft_ms is None else ttft_ms,
            first_frame_ms=first_frame if first_frame_ms is None else first_frame_ms,
        )

    def _draw(self, mean: float, jitter: float) -> int:
        if jitter <= 0:
            return max(0, round(mean))
        if self._config.latency_distribution == "normal":
            bound = _NORMAL_CLAMP_SIGMAS * jitter
            value = min(mean + bound, max(mean - bound, self._rng.gauss(mean, jitter)))
        else:
            value = self._rng.uniform(mean - jitter, mean + jitter)
        return max(0, round(value))


class LatencyStats:
    """Running sums for ``AgentInstanceDeleted.Data.LatencyData``, averaged over an instance's LLM turns.

    Counted turns are the ones an LLM answered: simulated user turns, SendAgentInstanceLLM and walkie-talkie
    replies. SendAgentInstanceTTS starts speaking at once in the emulator, so it is not counted.
    ``TotalCost`` is SPEAK_END -> SPEAKING for user speech and start -> SPEAKING for API-triggered LLM turns.
    With no counted turn every field is 0 ([INFER]: the object is always present, so consumers see one shape).
    """

    def __init__(self) -> None:
        self._answered = 0
        self._ttft_sum = 0
        self._tps_sum = 0.0
        self._spoken = 0
        self._first_frame_sum = 0
        self._total_sum = 0

    def llm_answered(self, ttft_ms: int, tokens_per_second: float) -> None:
        """An LLM produced its first token ``ttft_ms`` after the request."""
        self._answered += 1
        self._ttft_sum += ttft_ms
        self._tps_sum += tokens_per_second

    def speech_started(self, first_frame_ms: int, total_ms: int) -> None:
        """The first TTS frame came ``first_frame_ms`` after the first token, ``total_ms`` overall."""
        self._spoken += 1
        self._first_frame_sum += first_frame_ms
        self._total_sum += total_ms

    def latency_data(self) -> Json:
        """``{LLMTTFT, LLMTPS, TTSAudioFirstFrameTime, TotalCost}``: int ms averages, LLMTPS a float."""
        answered, spoken = max(self._answered, 1), max(self._spoken, 1)
        return {
            "LLMTTFT": round(self._ttft_sum / answered),
            "LLMTPS": round(self._tps_sum / answered, 3),
            "TTSAudioFirstFrameTime": round(self._first_frame_sum / spoken),
            "TotalCost": round(self._total_sum / spoken),
        }
