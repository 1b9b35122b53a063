"""CreateSessionRequest -> a validated ``CreateSpec``: every rule of ZEGO spec §5.6-§5.8 and §6,
checked before any upstream call, each violation reported with its request field path."""

from __future__ import annotations

from typing import Any

from google.protobuf import duration_pb2

from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from service.api.common import validate_request_id
from service.api.convert import (
    asr_from_proto,
    llm_from_proto,
    tts_from_proto,
    validate_asr,
    validate_llm,
    validate_tts,
)
from service.api.session_convert import KIND_FROM_ONEOF
from service.domain import zego_config as zc
from service.domain.model import SessionKind
from service.domain.sessions import CreateSpec
from service.domain.validation import USER_ID_MAX_BYTES, Violations

__all__ = ["chat_messages", "create_spec", "whole_seconds"]

_PROFILES: dict[int, str] = {api.DIGITAL_HUMAN_PROFILE_WEB: "web", api.DIGITAL_HUMAN_PROFILE_MOBILE: "mobile"}
_ROLES: dict[int, str] = {spb.CHAT_ROLE_USER: "user", spb.CHAT_ROLE_ASSISTANT: "assistant"}
_INTERRUPT: dict[int, int] = {api.INTERRUPT_MODE_IMMEDIATE: 0, api.INTERRUPT_MODE_DISABLED: 1}
_COMMUNICATION: dict[int, int] = {
    api.COMMUNICATION_MODE_FULL_DUPLEX: 0,
    api.COMMUNICATION_MODE_WALKIE_TALKIE: 2,
}
_SYNC_MODE: dict[int, int] = {
    api.HISTORY_SOURCE_UNSPECIFIED: 1,
    api.HISTORY_SOURCE_MESSAGES: 1,
    api.HISTORY_SOURCE_ZIM: 0,
}


def whole_seconds(v: Violations, path: str, value: duration_pb2.Duration, low: int, high: int) -> int:
    """A Duration of whole seconds within [low, high]."""
    v.check(value.nanos == 0, path, "must be whole seconds")
    v.in_range(path, value.seconds, low, high)
    return int(value.seconds)


def chat_messages(v: Violations, path: str, messages: list[spb.ChatMessage]) -> list[zc.Message]:
    """Context messages: a role and non-empty content each."""
    out: list[zc.Message] = []
    for i, msg in enumerate(messages):
        role = _ROLES.get(msg.role)
        v.check(role is not None, f"{path}[{i}].role", "must be CHAT_ROLE_USER or CHAT_ROLE_ASSISTANT")
        v.required(f"{path}[{i}].content", msg.content)
        if role is not None:
            out.append(zc.Message(role=role, content=msg.content))  # type: ignore[arg-type]
    return out


def _flag(value: bool) -> int:
    return 1 if value else 0


def _callbacks(req: api.CreateSessionRequest) -> zc.CallbackConfig:
    # Everything but user audio is on by default: the event stream and latency metrics need them.
    cfg = req.callback_config

    def pick(name: str, default: bool) -> int:
        return _flag(getattr(cfg, name) if cfg.HasField(name) else default)  # type: ignore[arg-type]

    return zc.CallbackConfig(
        asr_result=pick("asr_result", True),
        llm_result=pick("llm_result", True),
        interrupted=pick("interrupted", True),
        user_speak_action=pick("user_speak_action", True),
        agent_instance_status=pick("agent_instance_status", True),
        user_audio_data=pick("user_audio_data", False),
        host_tag=cfg.host_tag or None,
    )


def _vad(v: Violations, vad: api.VadConfig) -> zc.VAD:
    turn = zc.TurnDetectConfig(
        silence_segmentation=vad.silence_segmentation_ms if vad.HasField("silence_segmentation_ms") else None,
        pause_interval=vad.pause_interval_ms if vad.HasField("pause_interval_ms") else None,
    )
    if turn.silence_segmentation is not None:
        v.in_range("vad.silence_segmentation_ms", turn.silence_segmentation, 200, 2000)
    if turn.pause_interval is not None:
        v.in_range("vad.pause_interval_ms", turn.pause_interval, 200, 2000)
        if turn.silence_segmentation is not None:
            v.check(
                turn.pause_interval > turn.silence_segmentation,
                "vad.pause_interval_ms",
                "must be greater than silence_segmentation_ms",
            )
    sensitive = zc.SensitiveConfig(
        level=vad.sensitivity_level if vad.HasField("sensitivity_level") else None,
        min_speech_dur=vad.min_speech_duration_ms if vad.HasField("min_speech_duration_ms") else None,
        energy_threshold=vad.energy_threshold if vad.HasField("energy_threshold") else None,
    )
    if sensitive.level is not None:
        v.in_range("vad.sensitivity_level", sensitive.level, 0, 3)
    if sensitive.min_speech_dur is not None:
        v.in_range("vad.min_speech_duration_ms", sensitive.min_speech_dur, 0, 1000)
    if sensitive.energy_threshold is not None:
        v.in_range("vad.energy_threshold", sensitive.energy_threshold, 0, 1)
    return zc.VAD(
        turn_detect_config=turn, voice_detect_config=zc.VoiceDetectConfig(sensitive_config=sensitive)
    )


def _history(v: Violations, history: api.MessageHistory) -> zc.MessageHistory:
    v.check(len(history.messages) <= 100, "message_history.messages", "at most 100 messages are allowed")
    if history.HasField("window_size"):
        v.in_range("message_history.window_size", history.window_size, 0, 500)
    zim = None
    if history.source == api.HISTORY_SOURCE_ZIM:
        if history.HasField("zim_load_message_count"):
            v.in_range("message_history.zim_load_message_count", history.zim_load_message_count, 0, 500)
        zim = zc.ZIMConfig(
            robot_id=history.zim_robot_id or None,
            load_message_count=history.zim_load_message_count
            if history.HasField("zim_load_message_count")
            else None,
        )
    return zc.MessageHistory(
        sync_mode=_SYNC_MODE.get(history.source, 1),
        messages=tuple(chat_messages(v, "message_history.messages", list(history.messages))),
        window_size=history.window_size if history.HasField("window_size") else None,
        zim=zim,
    )


def _advanced(v: Violations, adv: api.AdvancedConfig, kind: SessionKind) -> zc.AdvancedConfig:
    max_idle = None
    if adv.HasField("max_idle_time"):
        max_idle = whole_seconds(v, "advanced_config.max_idle_time", adv.max_idle_time, 10, 1800)
    v.check(adv.interrupt_mode in (0, *_INTERRUPT), "advanced_config.interrupt_mode", "is not a known mode")
    v.check(
        adv.communication_mode in (0, *_COMMUNICATION),
        "advanced_config.communication_mode",
        "is not a known mode",
    )
    v.check(
        not (adv.disable_tts and kind is SessionKind.DIGITAL_HUMAN),
        "advanced_config.disable_tts",
        "a digital human cannot run without speech synthesis",
    )
    meta = None
    if adv.HasField("llm_meta_info"):
        v.required("advanced_config.llm_meta_info.begin_characters", adv.llm_meta_info.begin_characters)
        v.required("advanced_config.llm_meta_info.end_characters", adv.llm_meta_info.end_characters)
        meta = zc.LLMMetaInfo(
            begin_characters=adv.llm_meta_info.begin_characters,
            end_characters=adv.llm_meta_info.end_characters,
            send_meta_keys=tuple(adv.llm_meta_info.send_meta_keys) or None,
        )
    return zc.AdvancedConfig(
        interrupt_mode=_INTERRUPT.get(adv.interrupt_mode),
        max_idle_time=max_idle,
        disable_tts=adv.disable_tts or None,
        communication_mode=_COMMUNICATION.get(adv.communication_mode),
        llm_meta_info=meta,
        add_asr_info=adv.add_asr_info or None,
        tts_param_paths=dict(adv.tts_param_paths) or None,
    )


def _live_configs(
    v: Violations, req: api.CreateSessionRequest
) -> tuple[zc.CallbackConfigLive, zc.AdvancedConfigLive | None]:
    for name in ("llm", "asr", "vad", "message_history"):
        v.check(not req.HasField(name), name, "is not used by live digital humans")
    cfg = req.callback_config
    for name in ("asr_result", "llm_result", "user_speak_action", "user_audio_data"):
        present = cfg.HasField(name)  # type: ignore[arg-type]
        v.check(not present, f"callback_config.{name}", "is not available for live digital humans")
    callbacks = zc.CallbackConfigLive(
        interrupted=_flag(cfg.interrupted if cfg.HasField("interrupted") else True),
        agent_instance_status=_flag(
            cfg.agent_instance_status if cfg.HasField("agent_instance_status") else True
        ),
        host_tag=cfg.host_tag or None,
    )
    if not req.HasField("advanced_config"):
        return callbacks, None
    adv = req.advanced_config
    v.check(
        not (
            adv.interrupt_mode or adv.communication_mode or adv.add_asr_info or adv.HasField("llm_meta_info")
        ),
        "advanced_config",
        "live digital humans accept only max_idle_time, disable_tts and tts_param_paths",
    )
    max_idle = None
    if adv.HasField("max_idle_time"):
        max_idle = whole_seconds(v, "advanced_config.max_idle_time", adv.max_idle_time, 30, 86400)
    advanced = zc.AdvancedConfigLive(
        max_idle_time=max_idle,
        disable_tts=adv.disable_tts or None,
        tts_param_paths=dict(adv.tts_param_paths) or None,
    )
    return callbacks, advanced


def _kind(v: Violations, req: api.CreateSessionRequest) -> SessionKind:
    """Which of voice, digital_human, live_digital_human the request creates (required)."""
    oneof = req.WhichOneof("kind")
    if oneof is None:
        v.add("kind", "one of voice, digital_human or live_digital_human is required")
        v.raise_if_any()
    return KIND_FROM_ONEOF[str(oneof)]


def _cdn_url(v: Violations, req: api.CreateSessionRequest, kind: SessionKind) -> str | None:
    """A live digital human's RTMP push target, if it has one."""
    if kind is not SessionKind.LIVE_DIGITAL_HUMAN:
        return None
    cdn_url = req.live_digital_human.cdn_url or None
    if cdn_url:
        v.check(
            cdn_url.startswith(("rtmp://", "rtmps://")), "live_digital_human.cdn_url", "must be rtmp(s)://"
        )
    return cdn_url


def _validate_rtc(v: Violations, req: api.CreateSessionRequest, live: bool, cdn_url: str | None) -> None:
    """Where the agent joins (spec §6.1): the room (unless it pushes to a CDN) and the streams."""
    rtc = req.rtc
    if cdn_url is None:
        v.rtc_id("rtc.room_id", rtc.room_id)
    if live:
        v.check(not rtc.user_stream_id, "rtc.user_stream_id", "is not used by live digital humans")
    else:
        v.rtc_id("rtc.user_stream_id", rtc.user_stream_id)
    v.rtc_id("rtc.agent_user_id", rtc.agent_user_id, required=False, limit=USER_ID_MAX_BYTES)
    v.rtc_id("rtc.agent_stream_id", rtc.agent_stream_id, required=False)
    v.check(
        not rtc.agent_user_id or rtc.agent_user_id != req.user_id,
        "rtc.agent_user_id",
        "must differ from user_id",
    )
    v.max_bytes("rtc.stream_extra_info", rtc.stream_extra_info, 1024)


def _digital_human(v: Violations, req: api.CreateSessionRequest, kind: SessionKind) -> zc.DigitalHuman | None:
    """The avatar of a (live) digital human (spec §6.10); None for a voice agent."""
    dh_spec: api.DigitalHumanSpec | api.LiveDigitalHumanSpec
    if kind is SessionKind.DIGITAL_HUMAN:
        dh_spec, path = req.digital_human, "digital_human"
    elif kind is SessionKind.LIVE_DIGITAL_HUMAN:
        dh_spec, path = req.live_digital_human, "live_digital_human"
    else:
        return None
    if v.required(f"{path}.digital_human_id", dh_spec.digital_human_id):
        v.max_chars(f"{path}.digital_human_id", dh_spec.digital_human_id, 128)
    v.check(dh_spec.profile in (0, *_PROFILES), f"{path}.profile", "is not a known profile")
    v.check(dh_spec.encode_code in ("", "H264"), f"{path}.encode_code", "must be H264 (ZEGO's only codec)")
    return zc.DigitalHuman(
        digital_human_id=dh_spec.digital_human_id,
        config_id=_PROFILES.get(dh_spec.profile),
        encode_code=dh_spec.encode_code or None,
    )


def _validate_agent_configs(v: Violations, req: api.CreateSessionRequest) -> None:
    if req.HasField("llm"):
        validate_llm(v, "llm", req.llm)
    if req.HasField("tts"):
        validate_tts(v, "tts", req.tts)
    if req.HasField("asr"):
        validate_asr(v, "asr", req.asr)


def _voice_configs(v: Violations, req: api.CreateSessionRequest, kind: SessionKind) -> dict[str, Any]:
    """The CreateSpec fields only voice agents and digital humans (not live ones) use."""
    return {
        "llm": llm_from_proto(req.llm) if req.HasField("llm") else None,
        "asr": asr_from_proto(req.asr) if req.HasField("asr") else None,
        "vad": _vad(v, req.vad) if req.HasField("vad") else None,
        "message_history": _history(v, req.message_history),
        "callback_config": _callbacks(req),
        "advanced_config": _advanced(v, req.advanced_config, kind)
        if req.HasField("advanced_config")
        else None,
    }


def create_spec(
    req: api.CreateSessionRequest, *, max_duration_cap_seconds: int, request_hash: str
) -> CreateSpec:
    """Validate every field and build the domain's CreateSpec. Raises InvalidArgument."""
    v = Violations()
    v.agent_id("agent_id", req.agent_id)
    kind = _kind(v, req)
    live = kind is SessionKind.LIVE_DIGITAL_HUMAN
    v.user_id("user_id", req.user_id, required=not live)
    cdn_url = _cdn_url(v, req, kind)
    _validate_rtc(v, req, live, cdn_url)
    digital_human = _digital_human(v, req, kind)
    _validate_agent_configs(v, req)
    max_duration = None
    if req.HasField("max_duration"):
        max_duration = whole_seconds(v, "max_duration", req.max_duration, 1, max_duration_cap_seconds)
    v.labels("labels", req.labels.items())
    validate_request_id(v, req.request_id)
    live_callbacks, live_advanced = _live_configs(v, req) if live else (None, None)
    spec = CreateSpec(
        kind=kind,
        agent_id=req.agent_id,
        user_id=req.user_id,
        room_id=req.rtc.room_id,
        user_stream_id=req.rtc.user_stream_id,
        agent_user_id=req.rtc.agent_user_id,
        agent_stream_id=req.rtc.agent_stream_id,
        stream_extra_info=req.rtc.stream_extra_info or None,
        cdn_url=cdn_url,
        digital_human=digital_human,
        tts=tts_from_proto(req.tts) if req.HasField("tts") else None,
        live_callback_config=live_callbacks,
        live_advanced_config=live_advanced,
        max_duration_seconds=max_duration,
        labels=dict(req.labels),
        request_id=req.request_id,
        request_hash=request_hash,
        **({} if live else _voice_configs(v, req, kind)),
    )
    v.raise_if_any()
    return spec
