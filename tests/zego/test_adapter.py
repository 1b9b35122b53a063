"""The ZEGO adapter: domain types in, the same wire bodies the client always sent out, domain types back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.domain import zego_config as c
from service.domain import zego_errors
from service.domain import zego_port as p
from service.domain.model import SessionKind
from service.zego import exceptions as zx
from service.zego import models as m
from service.zego.adapter import ZegoAdapter
from service.zego.client import ZegoClient
from tests.zego.test_client import API_KEY, APP_ID, SECRET, TTS_TOKEN, Recorder, answer

LLM = c.LLM(url="https://llm.example/v1", api_key=API_KEY, model="gpt", temperature=0.5, params={"n": 1})
TTS = c.TTS(
    vendor="ByteDance",
    params={"app": {"token": TTS_TOKEN}, "speed": 1},
    filter_text=(c.FilterText("(", ")"),),
    character_filter=("*",),
)
VAD = c.VAD(
    turn_detect_config=c.TurnDetectConfig(silence_segmentation=500),
    voice_detect_config=c.VoiceDetectConfig(sensitive_config=c.SensitiveConfig(level=2)),
)
HISTORY = c.MessageHistory(sync_mode=1, messages=(c.Message("user", "hi"),), window_size=10)
ADVANCED = c.AdvancedConfig(
    max_idle_time=60, communication_mode=2, llm_meta_info=c.LLMMetaInfo("[", "]", ("mood",))
)


def body(request: httpx.Request) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(request.content)
    return parsed


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(answer(data={"AgentInstanceId": "1", "DigitalHumanConfig": "e30=", "Round": 7}))


@pytest.fixture
async def port(recorder: Recorder) -> AsyncIterator[ZegoAdapter]:
    client = ZegoClient(
        app_id=APP_ID,
        server_secret=SECRET,
        base_url="http://zego.test",
        transport=httpx.MockTransport(recorder),
    )
    async with client:
        yield ZegoAdapter(client)


def instance(kind: SessionKind, **overrides: Any) -> p.InstanceRequest:
    fields: dict[str, Any] = {
        "kind": kind,
        "agent_id": "a1",
        "user_id": "u1",
        "room_id": "r1",
        "agent_user_id": "ag_u",
        "agent_stream_id": "ag_s",
        "user_stream_id": "u1_s",
        "stream_extra_info": "x",
        "llm": LLM,
        "tts": TTS,
        "asr": c.ASR(vendor="Tencent", hot_word="agentgw|10"),
        "vad": VAD,
        "message_history": HISTORY,
        "callback_config": c.CallbackConfig(asr_result=1, user_audio_data=0, host_tag="h"),
        "advanced_config": ADVANCED,
    }
    fields.update(overrides)
    return p.InstanceRequest(**fields)


async def test_a_voice_create_sends_the_body_the_wire_models_build(
    port: ZegoAdapter, recorder: Recorder
) -> None:
    created = await port.create_instance(instance(SessionKind.VOICE))
    assert created == p.CreatedInstance("1", None)
    expected = m.CreateAgentInstanceRequest(
        agent_id="a1",
        user_id="u1",
        rtc=m.RTC(
            room_id="r1",
            agent_stream_id="ag_s",
            agent_user_id="ag_u",
            user_stream_id="u1_s",
            stream_extra_info="x",
        ),
        llm=m.LLM(
            url="https://llm.example/v1", api_key=API_KEY, model="gpt", temperature=0.5, params={"n": 1}
        ),
        tts=m.TTS(
            vendor="ByteDance",
            params={"app": {"token": TTS_TOKEN}, "speed": 1},
            filter_text=[m.FilterText(begin_characters="(", end_characters=")")],
            character_filter=["*"],
        ),
        asr=m.ASR(vendor="Tencent", hot_word="agentgw|10"),
        vad=m.VAD(
            turn_detect_config=m.TurnDetectConfig(silence_segmentation=500),
            voice_detect_config=m.VoiceDetectConfig(sensitive_config=m.SensitiveConfig(level=2)),
        ),
        message_history=m.MessageHistory(
            sync_mode=1, messages=[m.Message(role="user", content="hi")], window_size=10
        ),
        callback_config=m.CallbackConfig(asr_result=1, user_audio_data=0, host_tag="h"),
        advanced_config=m.AdvancedConfig(
            max_idle_time=60,
            communication_mode=2,
            llm_meta_info=m.LLMMetaInfo(begin_characters="[", end_characters="]", send_meta_keys=["mood"]),
        ),
    )
    [sent] = recorder.requests
    assert sent.url.params["Action"] == "CreateAgentInstance"
    assert body(sent) == expected.to_wire()
    assert body(sent)["LLM"]["ApiKey"] == API_KEY and body(sent)["AdvancedConfig"]["LLMMetaInfo"]


async def test_a_digital_human_create_adds_the_avatar_and_returns_its_config(
    port: ZegoAdapter, recorder: Recorder
) -> None:
    avatar = c.DigitalHuman("dh1", config_id="web", encode_code="H264")
    created = await port.create_instance(instance(SessionKind.DIGITAL_HUMAN, digital_human=avatar))
    assert created == p.CreatedInstance("1", "e30=")
    [sent] = recorder.requests
    assert sent.url.params["Action"] == "CreateDigitalHumanAgentInstance"
    assert body(sent)["DigitalHuman"] == {"DigitalHumanId": "dh1", "ConfigId": "web", "EncodeCode": "H264"}
    assert body(sent)["RTC"]["UserStreamId"] == "u1_s"


async def test_a_live_digital_human_pushes_to_a_cdn_or_joins_a_room(
    port: ZegoAdapter, recorder: Recorder
) -> None:
    avatar = c.DigitalHuman("dh1")
    live = instance(
        SessionKind.LIVE_DIGITAL_HUMAN,
        digital_human=avatar,
        llm=None,
        asr=None,
        vad=None,
        message_history=None,
        callback_config=None,
        advanced_config=None,
        live_callback_config=c.CallbackConfigLive(interrupted=1, agent_instance_status=1),
        live_advanced_config=c.AdvancedConfigLive(max_idle_time=300),
    )
    await port.create_instance(p.InstanceRequest(**{**live.__dict__, "cdn_url": "rtmp://cdn/x"}))
    await port.create_instance(live)
    cdn, rtc = (body(r) for r in recorder.requests)
    assert recorder.requests[0].url.params["Action"] == "CreateLiveDigitalHumanAgentInstance"
    assert cdn["CDN"] == {"Url": "rtmp://cdn/x"} and "RTC" not in cdn
    assert "CDN" not in rtc and "UserStreamId" not in str(rtc)
    assert rtc["AdvancedConfig"] == {"MaxIdleTime": 300} and "LLM" not in rtc


async def test_delete_is_graceful_only_when_asked(port: ZegoAdapter, recorder: Recorder) -> None:
    await port.delete_instance("9")
    await port.delete_instance("9", graceful_timeout_seconds=30)
    await port.delete_instance("9", graceful=True, graceful_timeout_seconds=30)
    assert [body(r) for r in recorder.requests] == [
        {"AgentInstanceId": "9"},
        {"AgentInstanceId": "9"},
        {"AgentInstanceId": "9", "GracefulShutdown": True, "GracefulShutdownTimeout": 30},
    ]


async def test_in_call_control_maps_its_options_and_returns_the_round(
    port: ZegoAdapter, recorder: Recorder
) -> None:
    turn = p.TextTurn("hello", system_prompt="be brief", add_answer_to_history=False, priority="High")
    assert await port.send_text("9", turn) == 7
    assert await port.speak("9", p.Speech("hi", same_priority_option="Enqueue")) == 7
    assert await port.start_listening("9", p.Listening(sequence=3, user_id="u1")) == 7
    await port.append_context("9", [c.Message("assistant", "ok")])
    await port.update_instance("9", p.InstanceUpdate(user_stream_id="u1_b"))
    assert [(r.url.params["Action"], body(r)) for r in recorder.requests] == [
        (
            "SendAgentInstanceLLM",
            {
                "AgentInstanceId": "9",
                "Text": "hello",
                "SystemPrompt": "be brief",
                "AddAnswerToHistory": False,
                "Priority": "High",
            },
        ),
        ("SendAgentInstanceTTS", {"AgentInstanceId": "9", "Text": "hi", "SamePriorityOption": "Enqueue"}),
        ("StartListening", {"AgentInstanceId": "9", "UserId": "u1", "Sequence": 3}),
        (
            "AddAgentInstanceMsg",
            {"AgentInstanceId": "9", "Messages": [{"Role": "assistant", "Content": "ok"}]},
        ),
        ("UpdateAgentInstance", {"AgentInstanceId": "9", "RTC": {"UserStreamId": "u1_b"}}),
    ]


async def test_agents_come_back_as_domain_values_with_their_secrets_out_of_repr() -> None:
    stored = m.Agent(
        agent_id="a1",
        name="A",
        llm=m.LLM(url="https://llm.example/v1", api_key=API_KEY, model="gpt"),
        tts=m.TTS(
            vendor="ByteDance",
            params={"app": {"token": TTS_TOKEN}},
            filter_text=[m.FilterText(begin_characters="(", end_characters=")")],
        ),
    )
    recorder = Recorder(answer(data={"Agents": [stored.to_wire()]}))
    client = ZegoClient(
        app_id=APP_ID,
        server_secret=SECRET,
        base_url="http://zego.test",
        transport=httpx.MockTransport(recorder),
    )
    async with client:
        [agent] = await ZegoAdapter(client).query_agents(["a1"])
    assert agent == c.Agent(
        agent_id="a1",
        name="A",
        llm=c.LLM(url="https://llm.example/v1", api_key=API_KEY, model="gpt"),
        tts=c.TTS(
            vendor="ByteDance", params={"app": {"token": TTS_TOKEN}}, filter_text=(c.FilterText("(", ")"),)
        ),
    )
    assert API_KEY not in repr(agent) and TTS_TOKEN not in repr(agent)
    assert body(recorder.requests[0]) == {"AgentIds": ["a1"]}


@pytest.mark.parametrize(("public", "fetch_mode"), [(None, 1), (True, 2), (False, 3)])
async def test_an_avatar_listing_scope_is_zegos_fetch_mode(public: bool | None, fetch_mode: int) -> None:
    recorder = Recorder(
        answer(data={"Total": 1, "DigitalHumans": [{"DigitalHumanId": "d", "InferenceModes": [1]}]})
    )
    client = ZegoClient(
        app_id=APP_ID,
        server_secret=SECRET,
        base_url="http://zego.test",
        transport=httpx.MockTransport(recorder),
    )
    async with client:
        page = await ZegoAdapter(client).list_avatars(p.AvatarQuery(public, None, 0, 5))
    assert page == p.AvatarList((p.AvatarSummary("d", "", "", None, (1,)),), 1)
    assert body(recorder.requests[0]) == {"FetchMode": fetch_mode, "Offset": 0, "Limit": 5}


def test_the_adapter_raises_the_domains_error_tree() -> None:
    assert zx.ZegoStateConflict is zego_errors.ZegoStateConflict
    assert zx.ZegoInstanceNotFound is p.ZegoInstanceNotFound
    port = ZegoAdapter.__new__(ZegoAdapter)
    assert port.error_class(p.GRACEFUL_SHUTDOWN_IN_PROGRESS) is zego_errors.ZegoStateConflict
    assert port.error_class(410000011) is zego_errors.ZegoConcurrencyLimit
    assert port.error_class(987654321) is zego_errors.ZegoServiceError
