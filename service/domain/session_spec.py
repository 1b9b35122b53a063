"""What a CreateSession asks ZEGO for: the validated spec, and the create call for each kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.domain.model import SessionKind, SessionRecord
from service.zego import models as m
from service.zego.client import ZegoClient

__all__ = ["CreateSpec", "create_instance"]


@dataclass(frozen=True)
class CreateSpec:
    """A validated CreateSession request, in ZEGO's terms. Empty agent ids are generated."""

    kind: SessionKind
    agent_id: str
    user_id: str
    room_id: str
    user_stream_id: str
    agent_user_id: str = ""
    agent_stream_id: str = ""
    stream_extra_info: str | None = None
    cdn_url: str | None = None
    digital_human: m.DigitalHuman | None = None
    llm: m.LLM | None = None
    tts: m.TTS | None = None
    asr: m.ASR | None = None
    vad: m.VAD | None = None
    message_history: m.MessageHistory | None = None
    callback_config: m.CallbackConfig | None = None
    advanced_config: m.AdvancedConfig | None = None
    live_callback_config: m.CallbackConfigLive | None = None
    live_advanced_config: m.AdvancedConfigLive | None = None
    max_duration_seconds: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    request_hash: str = ""


async def create_instance(
    zego: ZegoClient, row: SessionRecord, spec: CreateSpec, timeout: float | None
) -> tuple[str, str | None]:
    """Call the ZEGO create action of ``spec.kind`` with the row's generated ids.

    Returns ZEGO's AgentInstanceId and, for digital humans, its DigitalHumanConfig.
    """
    if spec.kind is SessionKind.LIVE_DIGITAL_HUMAN:
        assert spec.digital_human is not None
        rtc = None
        if spec.cdn_url is None:
            rtc = m.RTCLive(
                room_id=row.room_id,
                agent_stream_id=row.agent_stream_id,
                agent_user_id=row.agent_user_id,
                stream_extra_info=spec.stream_extra_info,
            )
        live = await zego.create_live_digital_human_agent_instance(
            m.CreateLiveDigitalHumanAgentInstanceRequest(
                agent_id=row.agent_id,
                digital_human=spec.digital_human,
                rtc=rtc,
                cdn=m.CDN(url=spec.cdn_url) if spec.cdn_url else None,
                tts=spec.tts,
                callback_config=spec.live_callback_config,
                advanced_config=spec.live_advanced_config,
            ),
            timeout=timeout,
        )
        return live.agent_instance_id, live.digital_human_config
    fields: dict[str, Any] = {
        "agent_id": row.agent_id,
        "user_id": row.user_id,
        "rtc": m.RTC(
            room_id=row.room_id,
            agent_stream_id=row.agent_stream_id,
            agent_user_id=row.agent_user_id,
            user_stream_id=row.user_stream_id,
            stream_extra_info=spec.stream_extra_info,
        ),
        "llm": spec.llm,
        "tts": spec.tts,
        "asr": spec.asr,
        "vad": spec.vad,
        "message_history": spec.message_history,
        "callback_config": spec.callback_config,
        "advanced_config": spec.advanced_config,
    }
    if spec.kind is SessionKind.DIGITAL_HUMAN:
        assert spec.digital_human is not None
        dh = await zego.create_digital_human_agent_instance(
            m.CreateDigitalHumanAgentInstanceRequest(**fields, digital_human=spec.digital_human),
            timeout=timeout,
        )
        return dh.agent_instance_id, dh.digital_human_config
    voice = await zego.create_agent_instance(m.CreateAgentInstanceRequest(**fields), timeout=timeout)
    return voice.agent_instance_id, None
