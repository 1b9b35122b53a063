"""What a CreateSession asks ZEGO for: the validated spec, and the create call for each kind."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.domain import zego_config as zc
from service.domain.model import SessionKind, SessionRecord
from service.domain.zego_port import InstanceRequest, ZegoPort

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
    digital_human: zc.DigitalHuman | None = None
    llm: zc.LLM | None = None
    tts: zc.TTS | None = None
    asr: zc.ASR | None = None
    vad: zc.VAD | None = None
    message_history: zc.MessageHistory | None = None
    callback_config: zc.CallbackConfig | None = None
    advanced_config: zc.AdvancedConfig | None = None
    live_callback_config: zc.CallbackConfigLive | None = None
    live_advanced_config: zc.AdvancedConfigLive | None = None
    max_duration_seconds: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    request_hash: str = ""


async def create_instance(
    zego: ZegoPort, row: SessionRecord, spec: CreateSpec, timeout: float | None
) -> tuple[str, str | None]:
    """Ask ZEGO for the instance of ``spec.kind`` with the row's generated ids.

    Returns ZEGO's AgentInstanceId and, for digital humans, its DigitalHumanConfig.
    """
    request = InstanceRequest(
        kind=spec.kind,
        agent_id=row.agent_id,
        user_id=row.user_id,
        room_id=row.room_id,
        agent_user_id=row.agent_user_id,
        agent_stream_id=row.agent_stream_id,
        user_stream_id=row.user_stream_id,
        stream_extra_info=spec.stream_extra_info,
        cdn_url=spec.cdn_url,
        digital_human=spec.digital_human,
        llm=spec.llm,
        tts=spec.tts,
        asr=spec.asr,
        vad=spec.vad,
        message_history=spec.message_history,
        callback_config=spec.callback_config,
        advanced_config=spec.advanced_config,
        live_callback_config=spec.live_callback_config,
        live_advanced_config=spec.live_advanced_config,
    )
    created = await zego.create_instance(request, timeout=timeout)
    return created.instance_id, created.digital_human_config
