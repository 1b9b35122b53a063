"""Protobuf <-> the domain's ZEGO config values for the shared objects (LLM, TTS, ASR, agents).

Secrets are write-only: ``*_to_proto`` withholds the LLM ApiKey and the TTS ``Params.app``
credentials and only says whether they are set, unless ``with_secrets`` is asked for (used
internally to merge an update, never for a response).
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import json_format, struct_pb2

from agentgw_client.gen.agentgw.v1 import agent_pb2 as pb
from service.domain import zego_config as zc
from service.domain.validation import TTS_VENDORS, Violations

__all__ = [
    "agent_from_proto",
    "agent_to_proto",
    "asr_from_proto",
    "dict_to_struct",
    "llm_from_proto",
    "struct_to_dict",
    "tts_from_proto",
    "validate_agent_configs",
    "validate_asr",
    "validate_struct",
]

_LLM_VENDORS = {
    pb.LLM_VENDOR_OPENAI_CHAT: "OpenAIChat",
    pb.LLM_VENDOR_OPENAI_RESPONSES: "OpenAIResponses",
}
_LLM_VENDORS_BACK = {v: k for k, v in _LLM_VENDORS.items()}


def _integral(value: Any) -> Any:
    # Struct keeps every number as a double; {"max_tokens": 1024} must reach ZEGO as 1024, not 1024.0.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain JSON data, integral numbers as ints."""
    return dict(_integral(json_format.MessageToDict(struct)))


def dict_to_struct(data: dict[str, Any] | None) -> struct_pb2.Struct:
    """Plain JSON data as a Struct."""
    struct = struct_pb2.Struct()
    if data:
        struct.update(data)
    return struct


def llm_from_proto(msg: pb.LlmConfig) -> zc.LLM:
    """The ZEGO LLM object for a proto LlmConfig."""
    return zc.LLM(
        vendor=_LLM_VENDORS.get(msg.vendor),
        url=msg.url or None,
        api_key=msg.api_key or None,
        model=msg.model or None,
        system_prompt=msg.system_prompt or None,
        temperature=msg.temperature if msg.HasField("temperature") else None,
        top_p=msg.top_p if msg.HasField("top_p") else None,
        params=struct_to_dict(msg.params) if msg.HasField("params") else None,
        add_agent_info=msg.add_agent_info or None,
        agent_extra_info=struct_to_dict(msg.agent_extra_info) if msg.HasField("agent_extra_info") else None,
    )


def llm_to_proto(llm: zc.LLM, *, with_secrets: bool = False) -> pb.LlmConfig:
    """A proto LlmConfig; the ApiKey only with ``with_secrets``."""
    msg = pb.LlmConfig(
        vendor=_LLM_VENDORS_BACK.get(llm.vendor or "", pb.LLM_VENDOR_UNSPECIFIED),
        url=llm.url or "",
        api_key=(llm.api_key or "") if with_secrets else "",
        api_key_set=bool(llm.api_key),
        model=llm.model or "",
        system_prompt=llm.system_prompt or "",
        add_agent_info=bool(llm.add_agent_info),
    )
    if llm.temperature is not None:
        msg.temperature = llm.temperature
    if llm.top_p is not None:
        msg.top_p = llm.top_p
    if llm.params:
        msg.params.CopyFrom(dict_to_struct(llm.params))
    if llm.agent_extra_info:
        msg.agent_extra_info.CopyFrom(dict_to_struct(llm.agent_extra_info))
    return msg


def tts_from_proto(msg: pb.TtsConfig) -> zc.TTS:
    """The ZEGO TTS object: ``app`` goes back inside Params, where ZEGO expects it."""
    params = struct_to_dict(msg.params) if msg.HasField("params") else {}
    if msg.HasField("app"):
        params["app"] = struct_to_dict(msg.app)
    return zc.TTS(
        vendor=msg.vendor or None,
        url=msg.url or None,
        params=params or None,
        filter_text=tuple(
            zc.FilterText(begin_characters=f.begin_characters, end_characters=f.end_characters)
            for f in msg.filter_texts
        )
        or None,
        terminator_text=msg.terminator_text or None,
        character_filter=tuple(msg.character_filters) or None,
    )


def tts_to_proto(tts: zc.TTS, *, with_secrets: bool = False) -> pb.TtsConfig:
    """A proto TtsConfig; the ``app`` credentials only with ``with_secrets``."""
    params = dict(tts.params or {})
    app = params.pop("app", None)
    msg = pb.TtsConfig(
        vendor=tts.vendor or "",
        url=tts.url or "",
        app_set=app is not None,
        filter_texts=[
            pb.TtsFilterText(begin_characters=f.begin_characters, end_characters=f.end_characters)
            for f in tts.filter_text or []
        ],
        terminator_text=tts.terminator_text or "",
        character_filters=list(tts.character_filter or []),
    )
    if params:
        msg.params.CopyFrom(dict_to_struct(params))
    if with_secrets and isinstance(app, dict):
        msg.app.CopyFrom(dict_to_struct(app))
    return msg


def asr_from_proto(msg: pb.AsrConfig) -> zc.ASR:
    """The ZEGO ASR object."""
    return zc.ASR(
        vendor=msg.vendor or None,
        params=struct_to_dict(msg.params) if msg.HasField("params") else None,
        vad_silence_segmentation=msg.vad_silence_segmentation_ms
        if msg.HasField("vad_silence_segmentation_ms")
        else None,
        pause_interval=msg.pause_interval_ms if msg.HasField("pause_interval_ms") else None,
        vad_sensitive_level=msg.vad_sensitive_level if msg.HasField("vad_sensitive_level") else None,
        vad_min_speech_dur=msg.vad_min_speech_duration_ms
        if msg.HasField("vad_min_speech_duration_ms")
        else None,
        vad_energy_threshold=msg.vad_energy_threshold if msg.HasField("vad_energy_threshold") else None,
        hot_word=msg.hot_word or None,
    )


def asr_to_proto(asr: zc.ASR) -> pb.AsrConfig:
    """A proto AsrConfig (ASR holds no secrets of ours)."""
    msg = pb.AsrConfig(vendor=asr.vendor or "", hot_word=asr.hot_word or "")
    if asr.params:
        msg.params.CopyFrom(dict_to_struct(asr.params))
    optional = {
        "vad_silence_segmentation_ms": asr.vad_silence_segmentation,
        "pause_interval_ms": asr.pause_interval,
        "vad_sensitive_level": asr.vad_sensitive_level,
        "vad_min_speech_duration_ms": asr.vad_min_speech_dur,
        "vad_energy_threshold": asr.vad_energy_threshold,
    }
    for name, value in optional.items():
        if value is not None:
            setattr(msg, name, value)
    return msg


def agent_from_proto(msg: pb.Agent) -> zc.Agent:
    """The ZEGO agent record for a proto Agent."""
    return zc.Agent(
        agent_id=msg.agent_id,
        name=msg.display_name or None,
        llm=llm_from_proto(msg.llm) if msg.HasField("llm") else None,
        tts=tts_from_proto(msg.tts) if msg.HasField("tts") else None,
        asr=asr_from_proto(msg.asr) if msg.HasField("asr") else None,
    )


def agent_to_proto(agent: zc.Agent, *, with_secrets: bool = False) -> pb.Agent:
    """A proto Agent; secrets withheld unless ``with_secrets``."""
    msg = pb.Agent(agent_id=agent.agent_id, display_name=agent.name or "")
    if agent.llm is not None:
        msg.llm.CopyFrom(llm_to_proto(agent.llm, with_secrets=with_secrets))
    if agent.tts is not None:
        msg.tts.CopyFrom(tts_to_proto(agent.tts, with_secrets=with_secrets))
    if agent.asr is not None:
        msg.asr.CopyFrom(asr_to_proto(agent.asr))
    return msg


def validate_struct(v: Violations, path: str, struct: struct_pb2.Struct) -> None:
    """Every number in a Struct is finite: JSON (so ZEGO, and the conversion to it) has no NaN or
    Infinity. Each bad number is named by its path, e.g. ``llm.params.options[2].x``."""
    stack: list[tuple[str, struct_pb2.Value]] = [(f"{path}.{k}", value) for k, value in struct.fields.items()]
    while stack:
        where, value = stack.pop()
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            v.check(math.isfinite(value.number_value), where, "must be a finite number (JSON has no NaN)")
        elif kind == "struct_value":
            stack.extend((f"{where}.{k}", item) for k, item in value.struct_value.fields.items())
        elif kind == "list_value":
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value.list_value.values))


def validate_asr(v: Violations, path: str, msg: pb.AsrConfig) -> None:
    """A known vendor, the VAD ranges (spec §6.4, §6.5), finite numbers everywhere."""
    v.max_chars(f"{path}.vendor", msg.vendor, 64)
    vad: dict[str, float | None] = {
        "vad_silence_segmentation_ms": msg.vad_silence_segmentation_ms
        if msg.HasField("vad_silence_segmentation_ms")
        else None,
        "pause_interval_ms": msg.pause_interval_ms if msg.HasField("pause_interval_ms") else None,
        "vad_sensitive_level": msg.vad_sensitive_level if msg.HasField("vad_sensitive_level") else None,
        "vad_min_speech_duration_ms": msg.vad_min_speech_duration_ms
        if msg.HasField("vad_min_speech_duration_ms")
        else None,
        "vad_energy_threshold": msg.vad_energy_threshold if msg.HasField("vad_energy_threshold") else None,
    }
    v.asr(path, msg.vendor, vad)
    validate_struct(v, f"{path}.params", msg.params)


def validate_llm(v: Violations, path: str, msg: pb.LlmConfig) -> None:
    """ZEGO requires Url, ApiKey and Model inside an LLM object (spec §6.2)."""
    v.required(f"{path}.url", msg.url)
    if msg.url:
        v.check(msg.url.startswith(("http://", "https://")), f"{path}.url", "must be an http(s) URL")
    v.required(f"{path}.api_key", msg.api_key)
    v.required(f"{path}.model", msg.model)
    if msg.HasField("temperature"):
        v.in_range(f"{path}.temperature", msg.temperature, 0, 2)
    if msg.HasField("top_p"):
        v.in_range(f"{path}.top_p", msg.top_p, 0, 1)
    validate_struct(v, f"{path}.params", msg.params)
    validate_struct(v, f"{path}.agent_extra_info", msg.agent_extra_info)


def validate_tts(v: Violations, path: str, msg: pb.TtsConfig) -> None:
    """ZEGO requires Vendor and Params.app inside a TTS object (spec §6.3)."""
    if v.required(f"{path}.vendor", msg.vendor):
        v.one_of(f"{path}.vendor", msg.vendor, TTS_VENDORS)
    v.check(
        msg.HasField("app") and len(msg.app.fields) > 0, f"{path}.app", "is required (the vendor credentials)"
    )
    v.check(
        "app" not in msg.params.fields, f"{path}.params", "must not contain 'app'; put credentials in app"
    )
    v.max_chars(f"{path}.terminator_text", msg.terminator_text, 4)
    for i, item in enumerate(msg.character_filters):
        v.max_chars(f"{path}.character_filters[{i}]", item, 2)
    for i, pair in enumerate(msg.filter_texts):
        v.required(f"{path}.filter_texts[{i}].begin_characters", pair.begin_characters)
        v.required(f"{path}.filter_texts[{i}].end_characters", pair.end_characters)
    validate_struct(v, f"{path}.params", msg.params)
    validate_struct(v, f"{path}.app", msg.app)


def validate_agent_configs(v: Violations, path: str, msg: pb.Agent) -> None:
    """The LLM, TTS and ASR rules for whichever of them are set."""
    if msg.HasField("llm"):
        validate_llm(v, f"{path}.llm", msg.llm)
    if msg.HasField("tts"):
        validate_tts(v, f"{path}.tts", msg.tts)
    if msg.HasField("asr"):
        validate_asr(v, f"{path}.asr", msg.asr)
