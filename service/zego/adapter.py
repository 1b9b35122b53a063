"""``ZegoAdapter``: the domain's ``ZegoPort`` over the HTTP ``ZegoClient``.

It maps the domain's types (``service.domain.zego_port``, ``service.domain.zego_config``) to ZEGO's
wire models (``service.zego.models``, ``service.zego.digital_human``) and the answers back. The config
values mirror the wire models field for field, so ``_wire`` converts them generically; answers are
converted explicitly, because only a few fields of them reach the domain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from service.domain import zego_config as c
from service.domain import zego_port as p
from service.domain.model import SessionKind
from service.zego import digital_human as dh
from service.zego import models as m
from service.zego.client import ZegoClient
from service.zego.exceptions import ZegoApiError, error_class

__all__ = ["ZegoAdapter", "agent_from_wire", "to_wire"]

_W = TypeVar("_W", bound=m.WireModel)

_FETCH_MODE = {None: dh.FETCH_ALL, True: dh.FETCH_PUBLIC, False: dh.FETCH_PRIVATE}


def to_wire(model: type[_W], value: Any) -> _W:
    """The wire model ``model`` for a domain config value (same field names; ``None`` is omitted)."""
    fields: dict[str, Any] = dataclasses.asdict(value)
    return model.model_validate(fields)


def _opt(model: type[_W], value: Any) -> _W | None:
    return None if value is None else to_wire(model, value)


def _llm(llm: m.LLM) -> c.LLM:
    return c.LLM(**llm.model_dump())


def _tts(tts: m.TTS) -> c.TTS:
    fields = tts.model_dump(exclude={"filter_text", "character_filter"})
    return c.TTS(
        **fields,
        filter_text=None
        if tts.filter_text is None
        else tuple(c.FilterText(f.begin_characters, f.end_characters) for f in tts.filter_text),
        character_filter=None if tts.character_filter is None else tuple(tts.character_filter),
    )


def agent_from_wire(agent: m.Agent) -> c.Agent:
    """A ZEGO agent record as the domain's ``Agent`` (secrets included, as ZEGO returned them)."""
    return c.Agent(
        agent_id=agent.agent_id,
        name=agent.name,
        llm=None if agent.llm is None else _llm(agent.llm),
        tts=None if agent.tts is None else _tts(agent.tts),
        asr=None if agent.asr is None else c.ASR(**agent.asr.model_dump()),
    )


def _create_fields(req: p.InstanceRequest) -> dict[str, Any]:
    return {
        "agent_id": req.agent_id,
        "user_id": req.user_id,
        "rtc": m.RTC(
            room_id=req.room_id,
            agent_stream_id=req.agent_stream_id,
            agent_user_id=req.agent_user_id,
            user_stream_id=req.user_stream_id,
            stream_extra_info=req.stream_extra_info,
        ),
        "llm": _opt(m.LLM, req.llm),
        "tts": _opt(m.TTS, req.tts),
        "asr": _opt(m.ASR, req.asr),
        "vad": _opt(m.VAD, req.vad),
        "message_history": _opt(m.MessageHistory, req.message_history),
        "callback_config": _opt(m.CallbackConfig, req.callback_config),
        "advanced_config": _opt(m.AdvancedConfig, req.advanced_config),
    }


def _live_request(req: p.InstanceRequest) -> m.CreateLiveDigitalHumanAgentInstanceRequest:
    assert req.digital_human is not None
    rtc = None
    if req.cdn_url is None:
        rtc = m.RTCLive(
            room_id=req.room_id,
            agent_stream_id=req.agent_stream_id,
            agent_user_id=req.agent_user_id,
            stream_extra_info=req.stream_extra_info,
        )
    return m.CreateLiveDigitalHumanAgentInstanceRequest(
        agent_id=req.agent_id,
        digital_human=to_wire(m.DigitalHuman, req.digital_human),
        rtc=rtc,
        cdn=m.CDN(url=req.cdn_url) if req.cdn_url else None,
        tts=_opt(m.TTS, req.tts),
        callback_config=_opt(m.CallbackConfigLive, req.live_callback_config),
        advanced_config=_opt(m.AdvancedConfigLive, req.live_advanced_config),
    )


class ZegoAdapter:
    """Implements ``ZegoPort`` with a ``ZegoClient`` (which the caller owns and closes)."""

    def __init__(self, client: ZegoClient) -> None:
        self.client = client

    def error_class(self, code: int) -> type[ZegoApiError]:
        return error_class(code)

    # --- agents ------------------------------------------------------------------------------------

    async def register_agent(self, agent: c.Agent, *, timeout: float | None = None) -> None:
        request = m.RegisterAgentRequest(
            agent_id=agent.agent_id,
            name=agent.name,
            llm=_opt(m.LLM, agent.llm),
            tts=_opt(m.TTS, agent.tts),
            asr=_opt(m.ASR, agent.asr),
        )
        await self.client.register_agent(request, timeout=timeout)

    async def update_agent(self, update: p.AgentUpdate, *, timeout: float | None = None) -> None:
        request = m.UpdateAgentRequest(
            agent_id=update.agent_id,
            name=update.name,
            llm=_opt(m.LLM, update.llm),
            tts=_opt(m.TTS, update.tts),
            asr=_opt(m.ASR, update.asr),
        )
        await self.client.update_agent(request, timeout=timeout)

    async def unregister_agent(self, agent_id: str, *, timeout: float | None = None) -> None:
        await self.client.unregister_agent(m.UnregisterAgentRequest(agent_id=agent_id), timeout=timeout)

    async def query_agents(
        self, agent_ids: Sequence[str], *, timeout: float | None = None
    ) -> tuple[c.Agent, ...]:
        data = await self.client.query_agents(
            m.QueryAgentsRequest(agent_ids=list(agent_ids)), timeout=timeout
        )
        return tuple(agent_from_wire(a) for a in data.agents)

    async def list_agents(self, *, limit: int, cursor: str, timeout: float | None = None) -> p.AgentList:
        data = await self.client.list_agents(m.ListAgentsRequest(limit=limit, cursor=cursor), timeout=timeout)
        return p.AgentList(tuple(agent_from_wire(a) for a in data.agents), data.cursor, data.total)

    # --- instances ---------------------------------------------------------------------------------

    async def create_instance(
        self, request: p.InstanceRequest, *, timeout: float | None = None
    ) -> p.CreatedInstance:
        if request.kind is SessionKind.LIVE_DIGITAL_HUMAN:
            live = await self.client.create_live_digital_human_agent_instance(
                _live_request(request), timeout=timeout
            )
            return p.CreatedInstance(live.agent_instance_id, live.digital_human_config)
        fields = _create_fields(request)
        if request.kind is SessionKind.DIGITAL_HUMAN:
            assert request.digital_human is not None
            avatar = to_wire(m.DigitalHuman, request.digital_human)
            data = await self.client.create_digital_human_agent_instance(
                m.CreateDigitalHumanAgentInstanceRequest(**fields, digital_human=avatar), timeout=timeout
            )
            return p.CreatedInstance(data.agent_instance_id, data.digital_human_config)
        voice = await self.client.create_agent_instance(
            m.CreateAgentInstanceRequest(**fields), timeout=timeout
        )
        return p.CreatedInstance(voice.agent_instance_id)

    async def update_instance(
        self, instance_id: str, update: p.InstanceUpdate, *, timeout: float | None = None
    ) -> None:
        stream = update.user_stream_id
        request = m.UpdateAgentInstanceRequest(
            agent_instance_id=instance_id,
            llm=_opt(m.LLM, update.llm),
            tts=_opt(m.TTS, update.tts),
            asr=_opt(m.ASR, update.asr),
            rtc=m.RTCUserStream(user_stream_id=stream) if stream is not None else None,
        )
        await self.client.update_agent_instance(request, timeout=timeout)

    async def delete_instance(
        self,
        instance_id: str,
        *,
        graceful: bool = False,
        graceful_timeout_seconds: int | None = None,
        timeout: float | None = None,
    ) -> None:
        request = m.DeleteAgentInstanceRequest(
            agent_instance_id=instance_id,
            graceful_shutdown=graceful or None,
            graceful_shutdown_timeout=graceful_timeout_seconds if graceful else None,
        )
        await self.client.delete_agent_instance(request, timeout=timeout)

    async def instance_status(self, instance_id: str, *, timeout: float | None = None) -> str:
        request = m.QueryAgentInstanceStatusRequest(agent_instance_id=instance_id)
        return (await self.client.query_agent_instance_status(request, timeout=timeout)).status

    # --- in-call control ---------------------------------------------------------------------------

    async def send_text(self, instance_id: str, turn: p.TextTurn, *, timeout: float | None = None) -> int:
        request = m.SendAgentInstanceLLMRequest(agent_instance_id=instance_id, **dataclasses.asdict(turn))
        return (await self.client.send_agent_instance_llm(request, timeout=timeout)).round

    async def speak(self, instance_id: str, speech: p.Speech, *, timeout: float | None = None) -> int:
        request = m.SendAgentInstanceTTSRequest(agent_instance_id=instance_id, **dataclasses.asdict(speech))
        return (await self.client.send_agent_instance_tts(request, timeout=timeout)).round

    async def interrupt(self, instance_id: str, *, timeout: float | None = None) -> int:
        request = m.InterruptAgentInstanceRequest(agent_instance_id=instance_id)
        return (await self.client.interrupt_agent_instance(request, timeout=timeout)).round

    async def get_context(self, instance_id: str, *, timeout: float | None = None) -> p.ContextMessages:
        request = m.GetAgentInstanceMsgListRequest(agent_instance_id=instance_id)
        data = await self.client.get_agent_instance_msg_list(request, timeout=timeout)
        return p.ContextMessages(
            tuple(c.Message(msg.role, msg.content) for msg in data.message_list), data.total
        )

    async def reset_context(self, instance_id: str, *, timeout: float | None = None) -> None:
        request = m.ResetAgentInstanceMsgListRequest(agent_instance_id=instance_id)
        await self.client.reset_agent_instance_msg_list(request, timeout=timeout)

    async def append_context(
        self, instance_id: str, messages: Sequence[c.Message], *, timeout: float | None = None
    ) -> None:
        wire = [m.Message(role=msg.role, content=msg.content) for msg in messages]
        request = m.AddAgentInstanceMsgRequest(agent_instance_id=instance_id, messages=wire)
        await self.client.add_agent_instance_msg(request, timeout=timeout)

    async def start_listening(
        self, instance_id: str, listening: p.Listening, *, timeout: float | None = None
    ) -> int:
        request = m.StartListeningRequest(agent_instance_id=instance_id, **dataclasses.asdict(listening))
        return (await self.client.start_listening(request, timeout=timeout)).round

    async def stop_listening(
        self, instance_id: str, listening: p.Listening, *, timeout: float | None = None
    ) -> int:
        request = m.StopListeningRequest(agent_instance_id=instance_id, **dataclasses.asdict(listening))
        return (await self.client.stop_listening(request, timeout=timeout)).round

    # --- digital-human assets ----------------------------------------------------------------------

    async def list_avatars(self, query: p.AvatarQuery, *, timeout: float | None = None) -> p.AvatarList:
        request = dh.GetDigitalHumanListRequest(
            inference_mode=query.inference_mode,
            fetch_mode=_FETCH_MODE[query.public],
            offset=query.offset,
            limit=query.limit,
        )
        data = await self.client.get_digital_human_list(request, timeout=timeout)
        items = tuple(
            p.AvatarSummary(s.digital_human_id, s.name, s.avatar_url, s.is_public, tuple(s.inference_modes))
            for s in data.digital_humans
        )
        return p.AvatarList(items, data.total)

    async def get_avatar(self, digital_human_id: str, *, timeout: float | None = None) -> p.AvatarDetails:
        request = dh.GetDigitalHumanInfoRequest(digital_human_id=digital_human_id)
        info = await self.client.get_digital_human_info(request, timeout=timeout)
        return p.AvatarDetails(
            digital_human_id=info.digital_human_id,
            name=info.name,
            avatar_url=info.avatar_url,
            is_public=info.is_public,
            actions=tuple(p.AvatarAction(a.action, a.preview_url) for a in info.actions),
            inference_modes=tuple(info.inference_modes),
        )

    async def list_timbres(
        self, digital_human_id: str | None, *, offset: int, limit: int, timeout: float | None = None
    ) -> p.TimbreList:
        request = dh.GetTimbreListRequest(digital_human_id=digital_human_id, offset=offset, limit=limit)
        data = await self.client.get_timbre_list(request, timeout=timeout)
        return p.TimbreList(
            tuple(p.Timbre(t.timbre_id, t.name, t.is_public) for t in data.timbres), data.total
        )
