"""Wire models: byte-exact against the spec's example bodies, null-tolerant, int64-exact, secret-safe."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from service.zego import models as m
from service.zego.models_config import wire_name

API_KEY = "sk-live-0123456789abcdef"
TTS_TOKEN = "tts-token-fedcba9876543210"
BIG_INT64 = 1921825797275873300  # > 2**53: a float would round it


def compact(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


# Literal example bodies from the spec.
REGISTER_AGENT_EXAMPLE = (  # §5.1
    '{"AgentId":"xiaozhi","Name":"小智","LLM":{"Url":"https://ark.cn-beijing.volces.com/api/v3/chat/completions",'
    '"ApiKey":"zego_test","Model":"doubao-1-5-lite-32k-250115","SystemPrompt":"..."},"TTS":{"Vendor":"ByteDance",'
    '"Params":{"app":{"appid":"zego_test","token":"zego_test","cluster":"volcano_tts"},'
    '"audio":{"voice_type":"zh_female_vv_uranus_bigtts"}}},"ASR":{"Vendor":"Tencent"}}'
)
CREATE_AGENT_INSTANCE_EXAMPLE = (  # §5.6
    '{"AgentId":"xiaozhi","UserId":"user_1","RTC":{"RoomId":"room_1","AgentStreamId":"agent_stream_1",'
    '"AgentUserId":"agent_user_1","UserStreamId":"user_stream_1"}}'
)


def test_register_agent_serialises_to_the_spec_example() -> None:
    request = m.RegisterAgentRequest(
        agent_id="xiaozhi",
        name="小智",
        llm=m.LLM(
            url="https://ark.cn-beijing.volces.com/api/v3/chat/completions",
            api_key="zego_test",
            model="doubao-1-5-lite-32k-250115",
            system_prompt="...",
        ),
        tts=m.TTS(
            vendor="ByteDance",
            params={
                "app": {"appid": "zego_test", "token": "zego_test", "cluster": "volcano_tts"},
                "audio": {"voice_type": "zh_female_vv_uranus_bigtts"},
            },
        ),
        asr=m.ASR(vendor="Tencent"),
    )
    assert compact(request.to_wire()) == REGISTER_AGENT_EXAMPLE
    # And the example parses back to the same model.
    assert m.RegisterAgentRequest.model_validate_json(REGISTER_AGENT_EXAMPLE) == request


def test_create_agent_instance_serialises_to_the_spec_example() -> None:
    request = m.CreateAgentInstanceRequest(
        agent_id="xiaozhi",
        user_id="user_1",
        rtc=m.RTC(
            room_id="room_1",
            agent_stream_id="agent_stream_1",
            agent_user_id="agent_user_1",
            user_stream_id="user_stream_1",
        ),
    )
    assert compact(request.to_wire()) == CREATE_AGENT_INSTANCE_EXAMPLE


def test_sample_message_history_keeps_an_empty_list() -> None:
    # ZEGO's samples send {SyncMode: 1, Messages: [], WindowSize: 10}: [] is a value, not "absent".
    history = m.MessageHistory(sync_mode=1, messages=[], window_size=10)
    assert history.to_wire() == {"SyncMode": 1, "Messages": [], "WindowSize": 10}


def test_none_fields_are_omitted_but_falsy_values_kept() -> None:
    request = m.SendAgentInstanceTTSRequest(agent_instance_id="1", text="hi", add_history=False)
    assert request.to_wire() == {"AgentInstanceId": "1", "Text": "hi", "AddHistory": False}
    assert m.ListAgentsRequest().to_wire() == {}


def test_acronym_wire_names() -> None:
    advanced = m.AdvancedConfig(
        disable_tts=True,
        add_asr_info=True,
        tts_param_paths={"pitch": "req_params.additions.post_process.pitch"},
        llm_meta_info=m.LLMMetaInfo(begin_characters="[[", end_characters="]]", send_meta_keys=["action"]),
    )
    assert set(advanced.to_wire()) == {"DisableTTS", "AddASRInfo", "TTSParamPaths", "LLMMetaInfo"}
    assert advanced.to_wire()["LLMMetaInfo"] == {
        "BeginCharacters": "[[",
        "EndCharacters": "]]",
        "SendMetaKeys": ["action"],
    }
    assert set(m.CallbackConfig(asr_result=1, llm_result=1, user_audio_data=1).to_wire()) == {
        "ASRResult",
        "LLMResult",
        "UserAudioData",
    }
    assert m.ASR(vad_silence_segmentation=500).to_wire() == {"VADSilenceSegmentation": 500}
    assert m.MessageHistory(zim=m.ZIMConfig(robot_id="@RBT#1")).to_wire() == {"ZIM": {"RobotId": "@RBT#1"}}
    assert wire_name("graceful_shutdown_timeout") == "GracefulShutdownTimeout"


def test_vad_nesting() -> None:
    vad = m.VAD(
        turn_detect_config=m.TurnDetectConfig(silence_segmentation=500, pause_interval=800),
        voice_detect_config=m.VoiceDetectConfig(
            sensitive_config=m.SensitiveConfig(level=3, min_speech_dur=100, energy_threshold=0.4)
        ),
    )
    assert vad.to_wire() == {
        "TurnDetectConfig": {"SilenceSegmentation": 500, "PauseInterval": 800},
        "VoiceDetectConfig": {"SensitiveConfig": {"Level": 3, "MinSpeechDur": 100, "EnergyThreshold": 0.4}},
    }


def test_digital_human_requests() -> None:
    rtc = m.RTC(room_id="r", agent_stream_id="s", agent_user_id="a", user_stream_id="u")
    dh = m.DigitalHuman(digital_human_id="63c3aa64-1d80-4b04-a0be-1c65614eb7eb", config_id="web")
    voice = m.CreateDigitalHumanAgentInstanceRequest(agent_id="x", user_id="u1", rtc=rtc, digital_human=dh)
    assert voice.to_wire()["DigitalHuman"] == {
        "DigitalHumanId": "63c3aa64-1d80-4b04-a0be-1c65614eb7eb",
        "ConfigId": "web",
    }
    live = m.CreateLiveDigitalHumanAgentInstanceRequest(
        agent_id="x",
        digital_human=dh,
        cdn=m.CDN(url="rtmp://push.example.com/live/stream_key"),
        advanced_config=m.AdvancedConfigLive(max_idle_time=900),
        callback_config=m.CallbackConfigLive(agent_instance_status=1),
    )
    assert live.to_wire() == {
        "AgentId": "x",
        "DigitalHuman": {"DigitalHumanId": "63c3aa64-1d80-4b04-a0be-1c65614eb7eb", "ConfigId": "web"},
        "CDN": {"Url": "rtmp://push.example.com/live/stream_key"},
        "CallbackConfig": {"AgentInstanceStatus": 1},
        "AdvancedConfig": {"MaxIdleTime": 900},
    }
    with pytest.raises(ValidationError):
        m.CreateDigitalHumanAgentInstanceRequest.model_validate(voice.to_wire() | {"DigitalHuman": None})


def test_null_is_absent_and_extra_fields_ignored() -> None:
    # ZEGO's sample server sends explicit nulls for unused objects (spec §5.6).
    body = json.loads(CREATE_AGENT_INSTANCE_EXAMPLE) | {
        "LLM": None,
        "TTS": None,
        "ASR": None,
        "MessageHistory": {"SyncMode": 1, "Messages": None, "WindowSize": 10},
        "SomethingNew": {"x": 1},
    }
    request = m.CreateAgentInstanceRequest.model_validate(body)
    assert request.llm is None
    assert request.message_history is not None
    assert request.message_history.messages is None
    assert request.to_wire() == json.loads(CREATE_AGENT_INSTANCE_EXAMPLE) | {
        "MessageHistory": {"SyncMode": 1, "WindowSize": 10}
    }


def test_null_lists_in_responses_take_defaults() -> None:
    data = m.ListAgentsData.model_validate({"Total": None, "Agents": None, "Cursor": None})
    assert (data.total, data.agents, data.cursor) == (0, [], "")
    assert m.GetAgentInstanceMsgListData.model_validate({"MessageList": None}).message_list == []


def test_list_agents_data_parses_the_documented_shape() -> None:
    raw = {
        "Total": 1,
        "Cursor": "COAI",
        "Agents": [
            {
                "AgentId": "xiaozhi",
                "Name": "小智",
                "LLM": {"Url": "https://x", "ApiKey": "eexxxxxxxxxxxxxxx", "Model": "m", "Unknown": 1},
                "TTS": {"Vendor": "ByteDance", "Params": {"app": {"token": TTS_TOKEN}}},
                "ASR": {},
            }
        ],
    }
    data = m.ListAgentsData.model_validate(raw)
    agent = data.agents[0]
    assert data.cursor == "COAI"
    assert agent.llm is not None and agent.llm.api_key == "eexxxxxxxxxxxxxxx"
    assert agent.asr == m.ASR()
    assert TTS_TOKEN not in repr(data)


def test_msg_list_example_parses() -> None:
    raw = (
        '{"Total":2,"MessageList":[{"Role":"user","Content":"你好"},{"Role":"assistant","Content":"你好呀"}]}'
    )
    data = m.GetAgentInstanceMsgListData.model_validate_json(raw)
    assert data.total == 2
    assert [msg.role for msg in data.message_list] == ["user", "assistant"]


def test_int64_values_stay_exact() -> None:
    text = f'{{"Round": {BIG_INT64}}}'
    assert m.RoundData.model_validate(json.loads(text)).round == BIG_INT64
    assert m.RoundData.model_validate_json(text).round == BIG_INT64
    request = m.StartListeningRequest(agent_instance_id="1912122918452641792", sequence=BIG_INT64)
    assert f'"Sequence":{BIG_INT64}' in compact(request.to_wire())
    assert json.loads(compact(request.to_wire()))["Sequence"] == BIG_INT64


def test_instance_id_stays_a_string_even_if_sent_as_a_number() -> None:
    data = m.CreateAgentInstanceData.model_validate(json.loads('{"AgentInstanceId": 1912122918452641792}'))
    assert data.agent_instance_id == "1912122918452641792"


def test_attribute_names_and_wire_names_both_populate() -> None:
    assert m.UnregisterAgentRequest(agent_id="a") == m.UnregisterAgentRequest.model_validate({"AgentId": "a"})


def _secret_request() -> m.UpdateAgentRequest:
    return m.UpdateAgentRequest(
        agent_id="a",
        llm=m.LLM(url="https://llm", api_key=API_KEY, model="m"),
        tts=m.TTS(vendor="MiniMax", params={"app": {"api_key": TTS_TOKEN}, "model": "speech-02-turbo"}),
    )


def test_repr_and_str_mask_credentials() -> None:
    request = _secret_request()
    for text in (repr(request), str(request), repr(request.llm), repr(request.tts), f"{request!r}"):
        assert API_KEY not in text
        assert TTS_TOKEN not in text
    assert "api_key='***'" in repr(request.llm)
    assert "'app': '***'" in repr(request.tts)
    assert "speech-02-turbo" in repr(request.tts)  # non-secret params still visible


def test_redacted_masks_at_depth_without_touching_the_original() -> None:
    request = _secret_request()
    safe = request.redacted()
    assert API_KEY not in compact(safe.to_wire())
    assert TTS_TOKEN not in compact(safe.to_wire())
    assert safe.to_wire()["LLM"]["ApiKey"] == "***"
    # The original still serialises the real credentials: ZEGO needs them.
    assert request.to_wire()["LLM"]["ApiKey"] == API_KEY
    assert request.to_wire()["TTS"]["Params"]["app"] == {"api_key": TTS_TOKEN}
    listed = m.ListAgentsData(agents=[m.Agent(agent_id="a", llm=m.LLM(api_key=API_KEY))]).redacted()
    assert API_KEY not in compact(listed.to_wire())


def test_validation_errors_do_not_echo_secrets() -> None:
    with pytest.raises(ValidationError) as caught:
        m.RegisterAgentRequest.model_validate(
            {"AgentId": "a", "LLM": {"ApiKey": API_KEY, "Temperature": "hot"}}
        )
    assert API_KEY not in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        m.RegisterAgentRequest.model_validate({"AgentId": "a", "LLM": API_KEY})
    assert API_KEY not in str(caught.value)


def test_priority_literals_are_enforced() -> None:
    with pytest.raises(ValidationError):
        m.SendAgentInstanceLLMRequest.model_validate(
            {"AgentInstanceId": "1", "Text": "t", "Priority": "Urgent"}
        )
    ok = m.SendAgentInstanceLLMRequest(
        agent_instance_id="1", text="t", priority="High", same_priority_option="Enqueue"
    )
    assert ok.to_wire() == {
        "AgentInstanceId": "1",
        "Text": "t",
        "Priority": "High",
        "SamePriorityOption": "Enqueue",
    }


@pytest.mark.parametrize(
    "request_model",
    [
        _secret_request(),
        m.DeleteAgentInstanceRequest(
            agent_instance_id="1", graceful_shutdown=True, graceful_shutdown_timeout=30
        ),
        m.UpdateAgentInstanceRequest(agent_instance_id="1", rtc=m.RTCUserStream(user_stream_id="u2")),
        m.AddAgentInstanceMsgRequest(agent_instance_id="1", messages=[m.Message(role="user", content="hi")]),
        m.QueryAgentsRequest(agent_ids=["a", "b"]),
        m.StopListeningRequest(agent_instance_id="1", user_id="u", sequence=2),
        m.TTS(vendor="x", filter_text=[m.FilterText(begin_characters="(", end_characters=")")]),
    ],
)
def test_wire_round_trip(request_model: m.WireModel) -> None:
    assert type(request_model).model_validate(request_model.to_wire()) == request_model
