"""Builders shared by the SessionService tests."""

from __future__ import annotations

from typing import Any

from google.protobuf import duration_pb2

from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from tests.conftest import Emulator

AGENT_ID = "helper-agent"
PUBLIC_AVATAR = "63c3aa64-1d80-4b04-a0be-1c65614eb7eb"


async def register_agent(emulator: Emulator, agent_id: str = AGENT_ID) -> None:
    """Register an agent straight at the emulator (signed, raw), as any ZEGO client would."""
    envelope = await emulator.call(
        "RegisterAgent",
        {
            "AgentId": agent_id,
            "Name": "helper",
            "LLM": {"Url": "https://llm.example/v1/chat/completions", "ApiKey": "k", "Model": "m"},
            "TTS": {"Vendor": "ByteDance", "Params": {"app": {"appid": "a", "token": "t", "cluster": "c"}}},
        },
    )
    assert envelope["Code"] == 0, envelope


def voice_request(user: str = "user_1", room: str = "room_1", **kwargs: Any) -> api.CreateSessionRequest:
    request = api.CreateSessionRequest(
        agent_id=AGENT_ID,
        user_id=user,
        voice=api.VoiceSpec(),
        rtc=api.RtcSpec(room_id=room, user_stream_id=f"{user}_stream"),
    )
    for key, value in kwargs.items():
        if isinstance(value, dict):
            getattr(request, key).update(value)
        else:
            setattr(request, key, value) if not hasattr(value, "CopyFrom") else getattr(
                request, key
            ).CopyFrom(value)
    return request


def digital_human_request(user: str = "user_dh", room: str = "room_dh") -> api.CreateSessionRequest:
    return api.CreateSessionRequest(
        agent_id=AGENT_ID,
        user_id=user,
        digital_human=api.DigitalHumanSpec(
            digital_human_id=PUBLIC_AVATAR, profile=api.DIGITAL_HUMAN_PROFILE_WEB
        ),
        rtc=api.RtcSpec(room_id=room, user_stream_id=f"{user}_stream"),
    )


def seconds(value: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=value)
