"""Configuration of the bundled ZEGO AI Agent emulator."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .digital_humans import DEFAULT_AVATARS, DEFAULT_TIMBRES, Avatar, Timbre

__all__ = [
    "DEFAULT_AUTO_TURN_UTTERANCES",
    "DEFAULT_RATE_LIMIT_CODE",
    "LATENCY_DISTRIBUTIONS",
    "EmulatorConfig",
]

DEFAULT_RATE_LIMIT_CODE = 410001029
"""ZEGO does not document the code for exceeding 10 QPS (spec §17); 410001029 is the only rate-limit code
it lists (for digital-human APIs), so it is the default guess."""

DEFAULT_AUTO_TURN_UTTERANCES = (
    "Hello, who am I talking to?",
    "What can you help me with today?",
    "Tell me something interesting about the weather.",
    "Thank you, that is all for now.",
)
"""What the simulated user says in automatic turns, in rotation."""

LATENCY_DISTRIBUTIONS = ("uniform", "normal")

_SECRET_FIELDS = frozenset({"server_secret", "callback_secret"})


@dataclass(frozen=True, repr=False)
class EmulatorConfig:
    """Everything the emulator needs to behave like one ZEGO project (one AppId).

    ``repr`` masks the secrets, so the config can be logged safely.
    """

    app_id: int
    """The project's AppId (uint32). Requests with another AppId get ``100000010``."""

    server_secret: str
    """ServerSecret (32 characters): verifies API signatures and Token04 tokens."""

    callback_secret: str
    """CallbackSecret: signs server callbacks (spec §8.4)."""

    callback_url: str | None = None
    """Where server callbacks are POSTed; None delivers nothing. ``POST /_emulator/callbacks`` changes it at
    runtime (an embedding gateway learns its own HTTP port only after start)."""

    callback_retry_resign: bool = False
    """[INFER] ZEGO does not say whether a retry is re-signed. False resends the identical body; True sends a
    fresh Nonce and a Timestamp advanced by the (unscaled) retry waits, signed again."""

    callback_timeout_seconds: float = 5.0
    """Per-attempt HTTP timeout of a callback POST, in real seconds (not scaled: it bounds a real socket)."""

    callback_max_pending: int = 10_000
    """Callbacks queued per instance before the oldest is dropped (a dead receiver must not grow memory)."""

    signature_case_sensitive: bool = True
    """ZEGO specifies the signature as lowercase hex (spec §1.4) and says nothing of other cases; [INFER] a
    server comparing strings refuses an uppercase one, so it gets ``100000005``. False accepts any case."""

    error_envelope_data: bool = False
    """Whether an error envelope carries ``"Data": null``. ZEGO's common-response table lists Data for every
    answer, its ErrorResponse schema has only Code, Message and RequestId (spec §2); the emulator follows the
    schema (False), and True produces the other form, which agentgw's client must parse the same."""

    signature_skew_seconds: int = 600
    """Maximum ``|now - Timestamp|`` before ``100000004`` (ZEGO: 10 minutes)."""

    voice_instance_limit: int = 10
    """Concurrent voice instances per AppId; beyond it CreateAgentInstance returns ``410000011``."""

    digital_human_instance_limit: int = 10
    """Concurrent digital-human instances per AppId, shared by interactive and live ones (``410001031``)."""

    digital_human_concurrency_code: int = 410001031
    """Code for a create beyond :attr:`digital_human_instance_limit`. ZEGO's docs say ``410001031``; ZEGO's
    sample server falls back to voice on ``410001025`` (spec §15.11), so both can be emulated."""

    rtc_conflicts: str = "async"
    """How reused RTC identities behave (spec §6.1). ``async`` (ZEGO's documented behaviour): the create
    succeeds, then an Exception callback and the instance's end (1206 for the later instance on a reused
    AgentStreamId; 1203 for the earlier one on a reused AgentUserId, and for the new one when AgentUserId
    equals UserId). ``strict``: refuse the create at once with 410000003 naming the field."""

    digital_humans: tuple[Avatar, ...] = DEFAULT_AVATARS
    """The Digital Human API catalogue: public, private and another app's avatars."""

    timbres: tuple[Timbre, ...] = DEFAULT_TIMBRES
    """Timbres: public ones, and private ones bound to an avatar."""

    check_digital_human_ids: bool = True
    """Create*DigitalHumanAgentInstance refuses ids outside :attr:`digital_humans` (410001027, or 410001048
    for another app's avatar). False accepts any id, as the emulator did before it had a catalogue."""

    rate_limit_per_second: float = 10.0
    """Token-bucket rate per action (ZEGO: 10 requests/second per action)."""

    rate_limit_code: int = DEFAULT_RATE_LIMIT_CODE
    """Code returned when the per-action bucket is empty; configurable because ZEGO does not document it."""

    time_scale: float = 1.0
    """Multiplies every emulated delay and idle timeout; ``0.01`` makes a 120 s idle timeout last 1.2 s."""

    default_max_idle_seconds: int = 120
    """``AdvancedConfig.MaxIdleTime`` default for voice and digital-human instances."""

    live_default_max_idle_seconds: int = 900
    """``AdvancedConfig.MaxIdleTime`` default for live (broadcast) digital-human instances."""

    created_callback_delay_ms: int = 200
    """Emulated delay from creation to ``AgentInstanceCreated`` (ZEGO sends it once the agent publishes)."""

    asr_latency_ms: float = 300.0
    """Mean emulated time from the user's SPEAK_END to ``ASRResult``."""

    asr_latency_jitter_ms: float = 100.0
    """Spread of the ASR latency: half-width (uniform) or standard deviation (normal)."""

    llm_ttft_ms: float = 600.0
    """Mean emulated LLM time to first token: THINKING to ``LLMResult``."""

    llm_ttft_jitter_ms: float = 200.0
    """Spread of the LLM time to first token."""

    tts_first_frame_ms: float = 400.0
    """Mean emulated time from the first LLM token to the first TTS frame: ``LLMResult`` to SPEAKING."""

    tts_first_frame_jitter_ms: float = 100.0
    """Spread of the TTS first-frame latency."""

    llm_tokens_per_second: float = 25.0
    """Reported as ``LatencyData.LLMTPS`` (the emulated LLM answers at once after its first token)."""

    latency_distribution: str = "uniform"
    """``uniform`` (mean ± jitter) or ``normal`` (sigma = jitter, clamped to mean ± 4 sigma and >= 0)."""

    latency_seed: int | None = None
    """Seeds the latency sampler (and Sequence gaps) for reproducible runs; None is random."""

    auto_turn_interval_seconds: float | None = None
    """Emulated seconds between automatic user turns of each voice/digital-human instance (demos); scaled by
    :attr:`time_scale` like every delay. None (the default) disables them."""

    auto_turn_utterances: tuple[str, ...] = DEFAULT_AUTO_TURN_UTTERANCES
    """What the simulated user says in automatic turns, in rotation."""

    def __post_init__(self) -> None:
        if not 0 < self.app_id < 2**32:
            raise ValueError("app_id must be a non-zero uint32")
        if len(self.server_secret) != 32:
            # Token04 uses the secret as a raw AES-256 key, so ZEGO requires exactly 32 characters.
            raise ValueError("server_secret must be exactly 32 characters")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if self.rate_limit_per_second <= 0:
            raise ValueError("rate_limit_per_second must be positive")
        if self.voice_instance_limit < 0 or self.digital_human_instance_limit < 0:
            raise ValueError("instance limits must not be negative")
        if self.digital_human_concurrency_code not in (410001025, 410001031):
            raise ValueError("digital_human_concurrency_code must be 410001031 (docs) or 410001025 (sample)")
        if self.rtc_conflicts not in ("async", "strict"):
            raise ValueError("rtc_conflicts must be async or strict")
        if self.signature_skew_seconds < 0:
            raise ValueError("signature_skew_seconds must not be negative")
        self._check_conversation()

    def _check_conversation(self) -> None:
        latencies = (
            self.asr_latency_ms,
            self.asr_latency_jitter_ms,
            self.llm_ttft_ms,
            self.llm_ttft_jitter_ms,
            self.tts_first_frame_ms,
            self.tts_first_frame_jitter_ms,
            self.created_callback_delay_ms,
        )
        if any(v < 0 for v in latencies):
            raise ValueError("latencies, jitters and created_callback_delay_ms must not be negative")
        if self.latency_distribution not in LATENCY_DISTRIBUTIONS:
            raise ValueError(f"latency_distribution must be one of {', '.join(LATENCY_DISTRIBUTIONS)}")
        if self.llm_tokens_per_second <= 0:
            raise ValueError("llm_tokens_per_second must be positive")
        if self.auto_turn_interval_seconds is not None and self.auto_turn_interval_seconds <= 0:
            raise ValueError("auto_turn_interval_seconds must be positive (or None)")
        if not self.auto_turn_utterances or not all(self.auto_turn_utterances):
            raise ValueError("auto_turn_utterances must be non-empty strings")
        if self.callback_timeout_seconds <= 0 or self.callback_max_pending < 1:
            raise ValueError("callback_timeout_seconds and callback_max_pending must be positive")

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown = "'***'" if f.name in _SECRET_FIELDS else repr(value)
            parts.append(f"{f.name}={shown}")
        return f"EmulatorConfig({', '.join(parts)})"

    def scaled(self, seconds: float) -> float:
        """An emulated duration in real seconds, after applying :attr:`time_scale`."""
        return seconds * self.time_scale
