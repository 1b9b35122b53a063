"""Wire models for ZEGO's configuration objects (spec §6), shared by requests and agent records.

Python attributes are snake_case; the wire names are ZEGO's PascalCase, derived by ``wire_name`` (which
keeps ZEGO's upper-case acronyms: ``llm_meta_info`` -> ``LLMMetaInfo``). Build payloads with
``to_wire()``: aliases on, ``None`` fields omitted. Parsing ignores unknown fields and treats JSON
``null`` as absent, because ZEGO's samples send ``null`` for unused objects (spec §5.6).

Limits and defaults are ZEGO's and live on ZEGO's side; these models only fix shape and types, so a
documented-but-conflicting limit (spec §15) can't make us refuse a request ZEGO would accept.
Credentials (``LLM.ApiKey``, ``TTS.Params["app"]``) are masked in ``repr()`` and by ``redacted()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = [
    "ASR",
    "CDN",
    "LLM",
    "RTC",
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
    "RTCLive",
    "RTCUserStream",
    "SensitiveConfig",
    "TurnDetectConfig",
    "VoiceDetectConfig",
    "WireModel",
    "ZIMConfig",
    "wire_name",
]

#: What a masked credential looks like in reprs and ``redacted()`` copies.
MASK: Final = "***"

_ACRONYMS: Final = {
    "asr": "ASR",
    "cdn": "CDN",
    "llm": "LLM",
    "rtc": "RTC",
    "tts": "TTS",
    "vad": "VAD",
    "zim": "ZIM",
}

Role = Literal["user", "assistant"]


def wire_name(name: str) -> str:
    """snake_case attribute -> ZEGO's PascalCase wire name (``add_asr_info`` -> ``AddASRInfo``)."""
    return "".join(_ACRONYMS.get(part, part.capitalize()) for part in name.split("_"))


class WireModel(BaseModel):
    """Base of every ZEGO wire model."""

    model_config = ConfigDict(
        alias_generator=wire_name,
        populate_by_name=True,
        extra="ignore",
        # Validation errors must not echo inputs: a rejected LLM object would otherwise print its ApiKey.
        hide_input_in_errors=True,
        # IDs are strings on the wire; tolerate a server that sends a snowflake ID as a JSON number.
        coerce_numbers_to_str=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        # Dropping nulls lets field defaults apply, so `"Agents": null` parses like a missing list.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready body: PascalCase keys, ``None`` fields omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def redacted(self) -> Self:
        """A copy safe to log: credentials at any depth replaced by ``"***"``."""
        updates: dict[str, Any] = {}
        for name, value in self:
            if isinstance(value, WireModel):
                updates[name] = value.redacted()
            elif isinstance(value, list) and any(isinstance(item, WireModel) for item in value):
                updates[name] = [item.redacted() if isinstance(item, WireModel) else item for item in value]
        return self.model_copy(update=updates) if updates else self.model_copy()


class RTC(WireModel):
    """Where a voice/digital-human agent joins (§6.1). IDs: digits, letters, ``_ - .``."""

    room_id: str
    agent_stream_id: str  # unique across *all* running instances
    agent_user_id: str  # unique across running instances; must differ from real users
    user_stream_id: str  # the real user's stream the agent plays
    stream_extra_info: str | None = None


class RTCLive(WireModel):
    """``RTC_Live`` of CreateLiveDigitalHumanAgentInstance (§5.8): no ``UserStreamId``."""

    room_id: str
    agent_stream_id: str
    agent_user_id: str
    stream_extra_info: str | None = None


class RTCUserStream(WireModel):
    """``RTC`` of UpdateAgentInstance (§5.9): switch the user stream the agent listens to."""

    user_stream_id: str


class CDN(WireModel):
    """CDN push target of a live digital human (§5.8); wins over ``RTC`` when both are set."""

    url: str


class LLM(WireModel):
    """LLM settings (§6.2). ZEGO requires ``url``, ``api_key`` and ``model`` on requests; they are
    optional here so stored agent records parse whatever ZEGO returns.
    """

    vendor: str | None = None  # "OpenAIChat" (default) | "OpenAIResponses"
    url: str | None = None
    api_key: str | None = None  # secret: masked in repr
    model: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    params: dict[str, Any] | None = None  # passed through into the LLM request
    add_agent_info: bool | None = None
    agent_extra_info: dict[str, Any] | None = None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (MASK if name == "api_key" and value is not None else value)

    def redacted(self) -> Self:
        """A copy with ``api_key`` masked."""
        return self.model_copy(update={"api_key": MASK} if self.api_key is not None else {})


class FilterText(WireModel):
    """Text between these delimiters is dropped before TTS (§6.3)."""

    begin_characters: str
    end_characters: str


def _mask_tts_params(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if params is None or "app" not in params:
        return params
    return {**params, "app": MASK}


class TTS(WireModel):
    """TTS settings (§6.3). ``params["app"]`` holds the vendor credentials and is masked in repr;
    other ``params`` keys pass through to the vendor. ``vendor`` and the filters cannot be updated on a
    running instance.
    """

    vendor: str | None = None  # "Aliyun" | "ByteDanceV3" | "ByteDanceFlowing" | "MiniMax" | "CosyVoice" ...
    url: str | None = None
    params: dict[str, Any] | None = None
    filter_text: list[FilterText] | None = None
    terminator_text: str | None = None
    character_filter: list[str] | None = None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (_mask_tts_params(value) if name == "params" else value)

    def redacted(self) -> Self:
        """A copy with ``params["app"]`` masked."""
        return self.model_copy(update={"params": _mask_tts_params(self.params)})


class ASR(WireModel):
    """ASR settings (§6.4). The ``vad_*``, ``pause_interval`` and ``hot_word`` fields are deprecated
    by ZEGO in favour of ``VAD`` and ``params``, and kept so old configurations still round-trip.
    """

    vendor: str | None = None  # "Tencent" (default) | "AliyunParaformer" | "Microsoft" | ...
    params: dict[str, Any] | None = None
    vad_silence_segmentation: int | None = None
    pause_interval: int | None = None
    vad_sensitive_level: int | None = None
    vad_min_speech_dur: int | None = None
    vad_energy_threshold: float | None = None
    hot_word: str | None = None


class TurnDetectConfig(WireModel):
    """When an utterance ends (§6.5), in milliseconds."""

    silence_segmentation: int | None = None
    pause_interval: int | None = None


class SensitiveConfig(WireModel):
    """Voice-detection sensitivity: level 0 medium, 1 low, 2 high, 3 custom (§6.5)."""

    level: int | None = None
    min_speech_dur: int | None = None
    energy_threshold: float | None = None


class VoiceDetectConfig(WireModel):
    """Voice-detection settings (§6.5)."""

    sensitive_config: SensitiveConfig | None = None


class VAD(WireModel):
    """Voice activity detection (§6.5)."""

    turn_detect_config: TurnDetectConfig | None = None
    voice_detect_config: VoiceDetectConfig | None = None


class Message(WireModel):
    """One LLM-context message (§6.7)."""

    role: Role
    content: str


class ZIMConfig(WireModel):
    """Where history is loaded from when ``sync_mode`` is 0 (§6.6)."""

    robot_id: str | None = None
    load_message_count: int | None = None


class MessageHistory(WireModel):
    """Initial LLM context (§6.6). ZEGO defaults to ``sync_mode=0`` (ZIM); without ZIM send 1."""

    sync_mode: int | None = None
    messages: list[Message] | None = None
    window_size: int | None = None
    zim: ZIMConfig | None = None


class CallbackConfig(WireModel):
    """Which optional callbacks to send (§6.8); each flag is 0 or 1."""

    asr_result: int | None = None
    llm_result: int | None = None
    interrupted: int | None = None
    user_speak_action: int | None = None
    agent_instance_status: int | None = None
    user_audio_data: int | None = None
    host_tag: str | None = None


class CallbackConfigLive(WireModel):
    """``CallbackConfig_Live`` of a live digital human (§5.8)."""

    interrupted: int | None = None
    agent_instance_status: int | None = None
    host_tag: str | None = None


class LLMMetaInfo(WireModel):
    """Extracts JSON metadata from LLM output between the delimiters (§6.9)."""

    begin_characters: str | None = None
    end_characters: str | None = None
    send_meta_keys: list[str] | None = None


class AdvancedConfig(WireModel):
    """Advanced instance settings (§6.9)."""

    interrupt_mode: int | None = None
    max_idle_time: int | None = None  # seconds the creating user may be absent
    disable_tts: bool | None = None
    communication_mode: int | None = None  # 0 full duplex, 2 walkie-talkie
    llm_meta_info: LLMMetaInfo | None = None
    add_asr_info: bool | None = None
    tts_param_paths: dict[str, str] | None = None


class AdvancedConfigLive(WireModel):
    """``AdvancedConfig_Live`` of a live digital human (§5.8)."""

    max_idle_time: int | None = None
    disable_tts: bool | None = None
    tts_param_paths: dict[str, str] | None = None


class DigitalHuman(WireModel):
    """The avatar to drive (§6.10)."""

    digital_human_id: str
    config_id: str | None = None  # "mobile" | "web"
    encode_code: str | None = None  # "H264"


class Agent(WireModel):
    """A registered agent as ListAgents/QueryAgents return it (§5.4). ``llm.api_key`` is included."""

    agent_id: str
    name: str | None = None
    llm: LLM | None = None
    tts: TTS | None = None
    asr: ASR | None = None
