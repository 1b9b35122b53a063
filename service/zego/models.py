"""Request bodies and response ``Data`` of the 19 ZEGO AI Agent actions (spec §4, §5).

Config objects (``RTC``, ``LLM``, ``TTS`` ...) live in ``models_config`` and are re-exported here, so
callers import everything from this module. Serialise with ``to_wire()``. int64 values (``Round``,
``Sequence``) are Python ints end to end; the client parses JSON with the stdlib, which never rounds
them through float.
"""

from __future__ import annotations

from typing import Literal

from service.zego.models_config import (
    ASR,
    CDN,
    LLM,
    RTC,
    TTS,
    VAD,
    AdvancedConfig,
    AdvancedConfigLive,
    Agent,
    CallbackConfig,
    CallbackConfigLive,
    DigitalHuman,
    FilterText,
    LLMMetaInfo,
    Message,
    MessageHistory,
    RTCLive,
    RTCUserStream,
    SensitiveConfig,
    TurnDetectConfig,
    VoiceDetectConfig,
    WireModel,
    ZIMConfig,
)

__all__ = [
    "ASR",
    "CDN",
    "LLM",
    "RTC",
    "TTS",
    "VAD",
    "AddAgentInstanceMsgRequest",
    "AdvancedConfig",
    "AdvancedConfigLive",
    "Agent",
    "AgentStatus",
    "CallbackConfig",
    "CallbackConfigLive",
    "CreateAgentInstanceData",
    "CreateAgentInstanceRequest",
    "CreateDigitalHumanAgentInstanceData",
    "CreateDigitalHumanAgentInstanceRequest",
    "CreateLiveDigitalHumanAgentInstanceData",
    "CreateLiveDigitalHumanAgentInstanceRequest",
    "DeleteAgentInstanceRequest",
    "DigitalHuman",
    "FilterText",
    "GetAgentInstanceMsgListData",
    "GetAgentInstanceMsgListRequest",
    "InterruptAgentInstanceData",
    "InterruptAgentInstanceRequest",
    "LLMMetaInfo",
    "ListAgentsData",
    "ListAgentsRequest",
    "Message",
    "MessageHistory",
    "Priority",
    "QueryAgentInstanceStatusData",
    "QueryAgentInstanceStatusRequest",
    "QueryAgentsData",
    "QueryAgentsRequest",
    "RTCLive",
    "RTCUserStream",
    "RegisterAgentRequest",
    "ResetAgentInstanceMsgListRequest",
    "RoundData",
    "SamePriorityOption",
    "SendAgentInstanceLLMData",
    "SendAgentInstanceLLMRequest",
    "SendAgentInstanceTTSData",
    "SendAgentInstanceTTSRequest",
    "SensitiveConfig",
    "StartListeningData",
    "StartListeningRequest",
    "StopListeningData",
    "StopListeningRequest",
    "TurnDetectConfig",
    "UnregisterAgentRequest",
    "UpdateAgentInstanceRequest",
    "UpdateAgentRequest",
    "VoiceDetectConfig",
    "WireModel",
    "ZIMConfig",
]

Priority = Literal["Low", "Medium", "High"]
SamePriorityOption = Literal["ClearAndInterrupt", "Enqueue"]
#: Documented values of ``QueryAgentInstanceStatusData.status``; kept as ``str`` on the model so an
#: undocumented spelling (the docs also show ``"Thinking"``) does not fail the whole call.
AgentStatus = Literal["IDLE", "LISTENING", "THINKING", "SPEAKING"]


# --- Agent templates (§5.1-§5.5) -------------------------------------------------------------------


class RegisterAgentRequest(WireModel):
    """RegisterAgent: only ``agent_id`` is required since docs 2.13.5."""

    agent_id: str
    name: str | None = None
    llm: LLM | None = None
    tts: TTS | None = None
    asr: ASR | None = None


class UnregisterAgentRequest(WireModel):
    """UnregisterAgent."""

    agent_id: str


class UpdateAgentRequest(WireModel):
    """UpdateAgent: omitted fields stay; ``llm``/``tts``/``asr`` each replace the stored object whole."""

    agent_id: str
    name: str | None = None
    llm: LLM | None = None
    tts: TTS | None = None
    asr: ASR | None = None


class ListAgentsRequest(WireModel):
    """ListAgents: ``limit`` 0..10 (0 or absent means 5); ``cursor`` empty on the first page."""

    limit: int | None = None
    cursor: str | None = None


class ListAgentsData(WireModel):
    """ListAgents ``Data``: an empty ``cursor`` means the last page."""

    total: int = 0
    agents: list[Agent] = []
    cursor: str = ""


class QueryAgentsRequest(WireModel):
    """QueryAgents: at most 10 IDs."""

    agent_ids: list[str]


class QueryAgentsData(WireModel):
    """QueryAgents ``Data``: unknown IDs are (most likely) just absent."""

    agents: list[Agent] = []


# --- Instance lifecycle (§5.6-§5.10) ---------------------------------------------------------------


class CreateAgentInstanceRequest(WireModel):
    """CreateAgentInstance: ``llm``/``tts``/``asr`` override the agent's template for this instance."""

    agent_id: str
    user_id: str
    rtc: RTC
    llm: LLM | None = None
    tts: TTS | None = None
    asr: ASR | None = None
    vad: VAD | None = None
    message_history: MessageHistory | None = None
    callback_config: CallbackConfig | None = None
    advanced_config: AdvancedConfig | None = None


class CreateAgentInstanceData(WireModel):
    """CreateAgentInstance ``Data``: the ~19-digit snowflake ID, as a string."""

    agent_instance_id: str


class CreateDigitalHumanAgentInstanceRequest(CreateAgentInstanceRequest):
    """CreateDigitalHumanAgentInstance: the voice body plus the avatar."""

    digital_human: DigitalHuman


class CreateDigitalHumanAgentInstanceData(WireModel):
    """``Data`` of both digital-human creates; ``digital_human_config`` is base64 JSON for the client SDK."""

    agent_instance_id: str
    digital_human_config: str | None = None


CreateLiveDigitalHumanAgentInstanceData = CreateDigitalHumanAgentInstanceData


class CreateLiveDigitalHumanAgentInstanceRequest(WireModel):
    """CreateLiveDigitalHumanAgentInstance: one-way broadcast via ``rtc`` or ``cdn`` (CDN wins)."""

    agent_id: str
    digital_human: DigitalHuman
    rtc: RTCLive | None = None
    cdn: CDN | None = None
    tts: TTS | None = None
    callback_config: CallbackConfigLive | None = None
    advanced_config: AdvancedConfigLive | None = None


class UpdateAgentInstanceRequest(WireModel):
    """UpdateAgentInstance: ``llm``/``tts``/``asr`` replace whole; TTS vendor and filters can't change."""

    agent_instance_id: str
    llm: LLM | None = None
    tts: TTS | None = None
    asr: ASR | None = None
    rtc: RTCUserStream | None = None


class DeleteAgentInstanceRequest(WireModel):
    """DeleteAgentInstance: graceful shutdown waits for IDLE up to ``graceful_shutdown_timeout`` s."""

    agent_instance_id: str
    graceful_shutdown: bool | None = None
    graceful_shutdown_timeout: int | None = None


# --- Instance control (§5.11-§5.18) ----------------------------------------------------------------


class _InstanceRequest(WireModel):
    agent_instance_id: str


class RoundData(WireModel):
    """``Data`` of the actions that start or end a round: the int64 ``Round``."""

    round: int


class SendAgentInstanceLLMRequest(_InstanceRequest):
    """SendAgentInstanceLLM: ``text`` goes to the LLM as if the user said it."""

    text: str
    system_prompt: str | None = None
    add_question_to_history: bool | None = None
    add_answer_to_history: bool | None = None
    priority: Priority | None = None
    same_priority_option: SamePriorityOption | None = None


class SendAgentInstanceTTSRequest(_InstanceRequest):
    """SendAgentInstanceTTS: the agent speaks ``text`` (at most 300 characters).

    ``interrupt_mode`` is deprecated by ZEGO (use ``priority``); ``enqueue_user_speech`` is undocumented
    but sent by ZEGO's own sample server.
    """

    text: str
    add_history: bool | None = None
    interrupt_mode: int | None = None
    priority: Priority | None = None
    same_priority_option: SamePriorityOption | None = None
    enqueue_user_speech: bool | None = None


SendAgentInstanceLLMData = RoundData
SendAgentInstanceTTSData = RoundData


class QueryAgentInstanceStatusRequest(_InstanceRequest):
    """QueryAgentInstanceStatus."""


class QueryAgentInstanceStatusData(WireModel):
    """QueryAgentInstanceStatus ``Data``: one of ``AgentStatus`` per the docs."""

    status: str


class InterruptAgentInstanceRequest(_InstanceRequest):
    """InterruptAgentInstance: cuts the current speech/LLM round (callback Reason 4)."""


InterruptAgentInstanceData = RoundData


class GetAgentInstanceMsgListRequest(_InstanceRequest):
    """GetAgentInstanceMsgList: read the LLM context."""


class GetAgentInstanceMsgListData(WireModel):
    """GetAgentInstanceMsgList ``Data``."""

    total: int = 0
    message_list: list[Message] = []


class ResetAgentInstanceMsgListRequest(_InstanceRequest):
    """ResetAgentInstanceMsgList: clear the LLM context."""


class AddAgentInstanceMsgRequest(_InstanceRequest):
    """AddAgentInstanceMsg: insert into the context without triggering the LLM or a new round."""

    messages: list[Message] | None = None


class StartListeningRequest(_InstanceRequest):
    """StartListening (walkie-talkie mode): ``sequence`` must increase across Start/Stop pairs."""

    user_id: str | None = None
    sequence: int | None = None


class StopListeningRequest(_InstanceRequest):
    """StopListening (walkie-talkie mode): the agent then answers what was said."""

    user_id: str | None = None
    sequence: int | None = None


StartListeningData = RoundData
StopListeningData = RoundData
