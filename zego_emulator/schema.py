"""Request bodies of the 19 actions, checked against ZEGO's schema (spec §5, §6) into small dataclasses.

Each ``parse_*`` function raises :class:`~.errors.ZegoError` (mostly ``410000003`` naming the field) and
otherwise returns a frozen dataclass that the state model executes. Unknown fields are ignored, as an
OpenAPI server would; ``null`` means absent.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from . import errors, objects
from .errors import ZegoError, invalid
from .validation import AGENT_ID_RE, INT64_MAX, RTC_ID_RE, USER_ID_RE, Fields, Json

__all__ = [
    "PRIORITIES",
    "AgentBody",
    "CreateBody",
    "DeleteBody",
    "DigitalHumanSpec",
    "ListenBody",
    "RtcSpec",
    "SpeakBody",
    "UpdateInstanceBody",
]

PRIORITIES = {"Low": 0, "Medium": 1, "High": 2}
"""Priority names mapped to a comparable rank."""
SAME_PRIORITY_OPTIONS = ("ClearAndInterrupt", "Enqueue")
TTS_TEXT_MAX_CHARS = 300

# --- request bodies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentBody:
    """RegisterAgent / UpdateAgent."""

    agent_id: str
    name: str | None
    llm: Json | None
    tts: Json | None
    asr: Json | None


@dataclass(frozen=True)
class RtcSpec:
    """``RTC`` (§6.1) or ``RTC_Live`` (§5.8, no UserStreamId)."""

    room_id: str
    agent_stream_id: str
    agent_user_id: str
    user_stream_id: str | None
    stream_extra_info: str | None


@dataclass(frozen=True)
class DigitalHumanSpec:
    """``DigitalHuman`` (§6.10)."""

    digital_human_id: str
    config_id: str
    encode_code: str

    def client_config(self, rtc: RtcSpec | None) -> str:
        """``DigitalHumanConfig``: base64 of compact JSON naming the avatar and the stream it publishes (§3).

        A CDN-only live instance has no RTC stream, so [INFER] its ``Streams`` list is empty.
        """
        streams = []
        if rtc is not None:
            streams.append(
                {
                    "RoomId": rtc.room_id,
                    "StreamId": rtc.agent_stream_id,
                    "EncodeCode": self.encode_code,
                    "ConfigId": self.config_id,
                }
            )
        blob = json.dumps(
            {"DigitalHumanId": self.digital_human_id, "Streams": streams}, separators=(",", ":")
        )
        return base64.b64encode(blob.encode()).decode()


@dataclass(frozen=True)
class CreateBody:
    """The three Create*AgentInstance actions, normalised."""

    kind: str
    agent_id: str
    user_id: str | None
    rtc: RtcSpec | None
    cdn_url: str | None
    llm: Json | None
    tts: Json | None
    asr: Json | None
    history: list[Json]
    callback_config: Json
    max_idle_seconds: int | None
    disable_tts: bool
    communication_mode: int
    digital_human: DigitalHumanSpec | None
    interrupt_mode: int = 0
    meta_keys: tuple[str, ...] = ()
    """``AdvancedConfig.LLMMetaInfo.SendMetaKeys`` (empty without LLMMetaInfo)."""


@dataclass(frozen=True)
class UpdateInstanceBody:
    """UpdateAgentInstance."""

    instance_id: str
    llm: Json | None
    tts: Json | None
    asr: Json | None
    user_stream_id: str | None


@dataclass(frozen=True)
class DeleteBody:
    """DeleteAgentInstance."""

    instance_id: str
    graceful: bool
    timeout_seconds: int


@dataclass(frozen=True)
class SpeakBody:
    """SendAgentInstanceLLM (``llm=True``) and SendAgentInstanceTTS."""

    instance_id: str
    llm: bool
    text: str
    priority: int
    enqueue: bool
    add_question: bool = False
    add_answer: bool = True
    extra: Json = field(default_factory=dict)


@dataclass(frozen=True)
class ListenBody:
    """StartListening (``start=True``) / StopListening."""

    instance_id: str
    start: bool
    user_id: str | None
    sequence: int | None


def agent_id(f: Fields) -> str:
    """A required ``AgentId`` with its charset and 128-byte limit."""
    value = f.text("AgentId", required=True, max_bytes=128, pattern=AGENT_ID_RE)
    assert value is not None
    return value


def instance_id(f: Fields) -> str:
    """A required ``AgentInstanceId`` (unknown ids are a business error, 410001002, not a schema one)."""
    value = f.text("AgentInstanceId", required=True, max_bytes=128)
    assert value is not None
    return value


def parse_agent(f: Fields, *, name_max_bytes: int) -> AgentBody:
    """RegisterAgent (Name <= 256 bytes) and UpdateAgent (Name <= 64 bytes)."""
    return AgentBody(
        agent_id=agent_id(f),
        name=f.text("Name", max_bytes=name_max_bytes),
        llm=objects.llm(f.obj("LLM")),
        tts=objects.tts(f.obj("TTS")),
        asr=objects.asr(f.obj("ASR")),
    )


def _rtc(f: Fields | None, *, live: bool) -> RtcSpec | None:
    if f is None:
        return None

    def rtc_id(key: str, limit: int) -> str:
        value = f.text(key, required=True, max_bytes=limit, pattern=RTC_ID_RE)
        assert value is not None
        return value

    return RtcSpec(
        room_id=rtc_id("RoomId", 128),
        agent_stream_id=rtc_id("AgentStreamId", 128),
        agent_user_id=rtc_id("AgentUserId", 32),
        user_stream_id=None if live else rtc_id("UserStreamId", 128),
        stream_extra_info=f.text("StreamExtraInfo", max_bytes=1024),
    )


def _digital_human(f: Fields | None) -> DigitalHumanSpec:
    if f is None:
        raise invalid("DigitalHuman is required")
    dh_id = f.raw("DigitalHumanId")
    if not isinstance(dh_id, str) or not dh_id:
        raise ZegoError(errors.INVALID_DIGITAL_HUMAN_PARAMETER, f"{f.name('DigitalHumanId')} is required")
    config_id = f.raw("ConfigId")
    if config_id is not None and config_id not in ("mobile", "web"):
        raise ZegoError(errors.DH_CONFIG_ID_UNSUPPORTED, f"{f.name('ConfigId')} must be mobile or web")
    encode = f.raw("EncodeCode")
    if encode is not None and encode != "H264":
        raise ZegoError(errors.INVALID_DIGITAL_HUMAN_PARAMETER, f"{f.name('EncodeCode')} must be H264")
    return DigitalHumanSpec(dh_id, config_id or "web", "H264")


def parse_create(f: Fields, kind: str) -> CreateBody:
    """CreateAgentInstance / CreateDigitalHumanAgentInstance / CreateLiveDigitalHumanAgentInstance."""
    live = kind == "live_digital_human"
    agent = agent_id(f)
    user_id = f.text("UserId", required=not live, max_bytes=32, pattern=USER_ID_RE)
    cdn = f.obj("CDN")
    cdn_url = cdn.text("Url", required=True) if cdn is not None else None
    # RtcInfo appears in some doc examples instead of RTC (§6.1); accept it as an alias. For a live
    # instance CDN wins when both are set (§5.8), so RTC is then ignored altogether.
    rtc_fields = f.obj("RTC", alias="RtcInfo", required=not live)
    rtc = None if cdn_url is not None else _rtc(rtc_fields, live=live)
    if live and rtc is None and cdn_url is None:
        raise invalid("RTC or CDN is required")
    dh = _digital_human(f.obj("DigitalHuman")) if kind != "voice" else None
    advanced = f.obj("AdvancedConfig")
    max_idle = disable_tts = comm = interrupt_mode = None
    meta_keys: list[str] = []
    if advanced is not None:
        lo, hi = (30, 86400) if live else (10, 1800)
        max_idle = advanced.integer("MaxIdleTime", lo=lo, hi=hi)
        disable_tts = advanced.boolean("DisableTTS")
        advanced.obj("TTSParamPaths")
        if not live:
            interrupt_mode = advanced.integer("InterruptMode", choices=(0, 1))
            comm = advanced.integer("CommunicationMode", choices=(0, 2))
            meta = advanced.obj("LLMMetaInfo")
            if meta is not None:
                meta.text("BeginCharacters")
                meta.text("EndCharacters")
                meta_keys = meta.strings("SendMetaKeys")
            advanced.boolean("AddASRInfo")
    if not live:
        objects.vad(f.obj("VAD"))
    return CreateBody(
        kind=kind,
        agent_id=agent,
        user_id=user_id,
        rtc=rtc,
        cdn_url=cdn_url,
        llm=None if live else objects.llm(f.obj("LLM")),
        tts=objects.tts(f.obj("TTS")),
        asr=None if live else objects.asr(f.obj("ASR")),
        history=[] if live else objects.history(f.obj("MessageHistory")),
        callback_config=objects.callback_config(f.obj("CallbackConfig"), live=live),
        max_idle_seconds=max_idle,
        disable_tts=bool(disable_tts),
        communication_mode=comm or 0,
        digital_human=dh,
        interrupt_mode=interrupt_mode or 0,
        meta_keys=tuple(meta_keys),
    )


def parse_update_instance(f: Fields) -> UpdateInstanceBody:
    """UpdateAgentInstance: LLM/TTS/ASR replaced whole; RTC only carries UserStreamId."""
    rtc = f.obj("RTC", alias="RtcInfo")
    stream = rtc.text("UserStreamId", max_bytes=128, pattern=RTC_ID_RE) if rtc is not None else None
    return UpdateInstanceBody(
        instance_id=instance_id(f),
        llm=objects.llm(f.obj("LLM")),
        tts=objects.tts(f.obj("TTS")),
        asr=objects.asr(f.obj("ASR")),
        user_stream_id=stream,
    )


def parse_delete(f: Fields) -> DeleteBody:
    """DeleteAgentInstance: GracefulShutdownTimeout is 1..120 s, default 30."""
    return DeleteBody(
        instance_id=instance_id(f),
        graceful=bool(f.boolean("GracefulShutdown")),
        timeout_seconds=f.integer("GracefulShutdownTimeout", lo=1, hi=120) or 30,
    )


def _priority(f: Fields, *, deprecated_mode: int | None = None) -> tuple[int, bool]:
    name = f.text("Priority", choices=tuple(PRIORITIES))
    option = f.text("SamePriorityOption", choices=SAME_PRIORITY_OPTIONS)
    if name is None:
        # TTS InterruptMode (deprecated): 1 means High + ClearAndInterrupt; it only applies when the
        # caller did not use the newer Priority field.
        name = "High" if deprecated_mode == 1 else "Medium"
    return PRIORITIES[name], option == "Enqueue"


def parse_speak(f: Fields, *, llm_call: bool) -> SpeakBody:
    """SendAgentInstanceLLM / SendAgentInstanceTTS (TTS Text is at most 300 characters)."""
    iid = instance_id(f)
    text = f.text("Text", required=True, max_chars=None if llm_call else TTS_TEXT_MAX_CHARS)
    assert text is not None
    if llm_call:
        f.text("SystemPrompt")
        priority, enqueue = _priority(f)
        return SpeakBody(
            instance_id=iid,
            llm=True,
            text=text,
            priority=priority,
            enqueue=enqueue,
            add_question=bool(f.boolean("AddQuestionToHistory")),
            # The yaml says true; the guide says false (§15 item 3). The yaml is the contract.
            add_answer=f.boolean("AddAnswerToHistory") is not False,
        )
    mode = f.integer("InterruptMode", choices=(0, 1))
    f.boolean("EnqueueUserSpeech")
    priority, enqueue = _priority(f, deprecated_mode=mode)
    add_history = f.boolean("AddHistory") is not False
    return SpeakBody(iid, llm=False, text=text, priority=priority, enqueue=enqueue, add_answer=add_history)


def parse_listen(f: Fields, *, start: bool) -> ListenBody:
    """StartListening / StopListening."""
    return ListenBody(
        instance_id=instance_id(f),
        start=start,
        user_id=f.text("UserId", max_bytes=32, pattern=USER_ID_RE),
        sequence=f.integer("Sequence", lo=0, hi=INT64_MAX),
    )


def parse_list_agents(f: Fields) -> tuple[int, str]:
    """ListAgents: Limit 0..10 (0 or absent means 5), Cursor (empty on the first call)."""
    limit = f.integer("Limit", lo=0, hi=10) or 5
    return limit, f.text("Cursor") or ""


def parse_query_agents(f: Fields) -> list[str]:
    """QueryAgents: AgentIds is required, at most 10 items."""
    if f.array("AgentIds", required=True, max_items=10) is None:  # pragma: no cover - required above
        raise invalid("AgentIds is required")
    return f.strings("AgentIds", max_items=10)
