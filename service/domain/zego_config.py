"""The configuration objects a ZEGO agent or instance is built from (spec §6), as domain values.

These mirror ZEGO's config objects field for field (same snake_case names, ``None`` meaning "not
set, ZEGO's default"), so the adapter maps them to the wire models (``service.zego.models``) without
a table of its own. They are plain frozen dataclasses: the domain and the API build and compare them,
and only ``service.zego`` knows their JSON shape. Sequences are tuples, so two configs built from the
same input compare equal whichever way they were built.

Credentials (``LLM.api_key``, ``TTS.params["app"]``) are left out of ``repr()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ASR",
    "LLM",
    "TTS",
    "VAD",
    "AdvancedConfig",
    "AdvancedConfigLive",
    "Agent",
    "CallbackConfig",
    "CallbackConfigLive",
    "DigitalHuman",
    "FilterText",
    "LLMMetaInfo",
    "Message",
    "MessageHistory",
    "Role",
    "SensitiveConfig",
    "TurnDetectConfig",
    "VoiceDetectConfig",
    "ZIMConfig",
]

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class LLM:
    """LLM settings (§6.2). ZEGO requires ``url``, ``api_key`` and ``model`` on requests; they are
    optional here so stored agent records convert whatever ZEGO returns."""

    vendor: str | None = None  # "OpenAIChat" (default) | "OpenAIResponses"
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # secret
    model: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    params: dict[str, Any] | None = None  # passed through into the LLM request
    add_agent_info: bool | None = None
    agent_extra_info: dict[str, Any] | None = None


@dataclass(frozen=True)
class FilterText:
    """Text between these delimiters is dropped before TTS (§6.3)."""

    begin_characters: str
    end_characters: str


@dataclass(frozen=True)
class TTS:
    """TTS settings (§6.3). ``params["app"]`` holds the vendor credentials (hence no repr); ``vendor``
    and the filters cannot be updated on a running instance."""

    vendor: str | None = None
    url: str | None = None
    params: dict[str, Any] | None = field(default=None, repr=False)
    filter_text: tuple[FilterText, ...] | None = None
    terminator_text: str | None = None
    character_filter: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ASR:
    """ASR settings (§6.4); the ``vad_*``, ``pause_interval`` and ``hot_word`` fields are ZEGO-deprecated."""

    vendor: str | None = None
    params: dict[str, Any] | None = None
    vad_silence_segmentation: int | None = None
    pause_interval: int | None = None
    vad_sensitive_level: int | None = None
    vad_min_speech_dur: int | None = None
    vad_energy_threshold: float | None = None
    hot_word: str | None = None


@dataclass(frozen=True)
class TurnDetectConfig:
    """When an utterance ends (§6.5), in milliseconds."""

    silence_segmentation: int | None = None
    pause_interval: int | None = None


@dataclass(frozen=True)
class SensitiveConfig:
    """Voice-detection sensitivity: level 0 medium, 1 low, 2 high, 3 custom (§6.5)."""

    level: int | None = None
    min_speech_dur: int | None = None
    energy_threshold: float | None = None


@dataclass(frozen=True)
class VoiceDetectConfig:
    """Voice-detection settings (§6.5)."""

    sensitive_config: SensitiveConfig | None = None


@dataclass(frozen=True)
class VAD:
    """Voice activity detection (§6.5)."""

    turn_detect_config: TurnDetectConfig | None = None
    voice_detect_config: VoiceDetectConfig | None = None


@dataclass(frozen=True)
class Message:
    """One LLM-context message (§6.7)."""

    role: Role
    content: str


@dataclass(frozen=True)
class ZIMConfig:
    """Where history is loaded from when ``sync_mode`` is 0 (§6.6)."""

    robot_id: str | None = None
    load_message_count: int | None = None


@dataclass(frozen=True)
class MessageHistory:
    """Initial LLM context (§6.6): ``sync_mode`` 0 loads from ZIM, 1 uses ``messages``."""

    sync_mode: int | None = None
    messages: tuple[Message, ...] | None = None
    window_size: int | None = None
    zim: ZIMConfig | None = None


@dataclass(frozen=True)
class CallbackConfig:
    """Which optional callbacks to send (§6.8); each flag is 0 or 1."""

    asr_result: int | None = None
    llm_result: int | None = None
    interrupted: int | None = None
    user_speak_action: int | None = None
    agent_instance_status: int | None = None
    user_audio_data: int | None = None
    host_tag: str | None = None


@dataclass(frozen=True)
class CallbackConfigLive:
    """The callbacks of a live digital human (§5.8)."""

    interrupted: int | None = None
    agent_instance_status: int | None = None
    host_tag: str | None = None


@dataclass(frozen=True)
class LLMMetaInfo:
    """Extracts JSON metadata from LLM output between the delimiters (§6.9)."""

    begin_characters: str | None = None
    end_characters: str | None = None
    send_meta_keys: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AdvancedConfig:
    """Advanced instance settings (§6.9)."""

    interrupt_mode: int | None = None
    max_idle_time: int | None = None  # seconds the creating user may be absent
    disable_tts: bool | None = None
    communication_mode: int | None = None  # 0 full duplex, 2 walkie-talkie
    llm_meta_info: LLMMetaInfo | None = None
    add_asr_info: bool | None = None
    tts_param_paths: dict[str, str] | None = None


@dataclass(frozen=True)
class AdvancedConfigLive:
    """The advanced settings of a live digital human (§5.8)."""

    max_idle_time: int | None = None
    disable_tts: bool | None = None
    tts_param_paths: dict[str, str] | None = None


@dataclass(frozen=True)
class DigitalHuman:
    """The avatar to drive (§6.10)."""

    digital_human_id: str
    config_id: str | None = None  # "mobile" | "web"
    encode_code: str | None = None  # "H264"


@dataclass(frozen=True)
class Agent:
    """A registered agent template (§5.1, §5.4); ``llm.api_key`` included when ZEGO returns it."""

    agent_id: str
    name: str | None = None
    llm: LLM | None = None
    tts: TTS | None = None
    asr: ASR | None = None
