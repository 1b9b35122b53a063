"""Instance creation of all three kinds: schema, limits, uniqueness, DigitalHumanConfig (spec §5.6-§5.8)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from .conftest import DH_ID, LLM, TTS, StartEmulator, Zego

INSTANCE_ID = re.compile(r"[0-9]{19}")


async def test_voice_instance(zego: Zego) -> None:
    data = await zego.ok("CreateAgentInstance", {"AgentId": "agent_1", "UserId": "user_1", "RTC": zego.rtc()})
    assert set(data) == {"AgentInstanceId"}
    assert INSTANCE_ID.fullmatch(data["AgentInstanceId"])
    assert (await zego.ok("QueryAgentInstanceStatus", {"AgentInstanceId": data["AgentInstanceId"]})) == {
        "Status": "IDLE"
    }
    # AgentInstanceCreated follows after a short emulated delay (the agent joining and publishing).
    created = await zego.wait_events(data["AgentInstanceId"], "AgentInstanceCreated")
    assert len(created) == 1 and created[0]["data"]["CreatedTimestamp"] > 0


async def test_null_sub_objects_are_absent(zego: Zego) -> None:
    body = {
        "AgentId": "agent_1",
        "UserId": "user_1",
        "RTC": zego.rtc(),
        "LLM": None,
        "TTS": None,
        "ASR": None,
        "VAD": None,
        "MessageHistory": None,
        "CallbackConfig": None,
        "AdvancedConfig": None,
    }
    await zego.ok("CreateAgentInstance", body)


async def test_rtc_info_is_an_alias_of_rtc(zego: Zego) -> None:
    await zego.ok("CreateAgentInstance", {"AgentId": "agent_1", "UserId": "user_1", "RtcInfo": zego.rtc()})
    envelope = await zego.call(
        "CreateAgentInstance", {"AgentId": "agent_1", "UserId": "u", "RtcInfo": {"RoomId": "r"}}
    )
    assert envelope["Message"] == "RtcInfo.AgentStreamId is required"


async def test_instance_needs_an_llm_and_tts_from_agent_or_request(zego: Zego) -> None:
    await zego.ok("RegisterAgent", {"AgentId": "bare"})
    envelope = await zego.call("CreateAgentInstance", {"AgentId": "bare", "UserId": "u", "RTC": zego.rtc()})
    assert envelope["Code"] == 410000003 and envelope["Message"].startswith("LLM is required")
    await zego.ok(
        "CreateAgentInstance", {"AgentId": "bare", "UserId": "u", "RTC": zego.rtc(), "LLM": LLM, "TTS": TTS}
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.pop("RTC"), "RTC is required"),
        (lambda b: b.pop("UserId"), "UserId is required"),
        (lambda b: b.update(UserId="u" * 33), "UserId must be at most 32 bytes"),
        (lambda b: b.update(UserId="has.dot"), "UserId contains characters that are not allowed"),
        (lambda b: b["RTC"].update(RoomId="r" * 129), "RTC.RoomId must be at most 128 bytes"),
        (lambda b: b["RTC"].update(RoomId="room#1"), "RTC.RoomId contains characters that are not allowed"),
        (lambda b: b["RTC"].update(AgentUserId="a" * 33), "RTC.AgentUserId must be at most 32 bytes"),
        (lambda b: b["RTC"].pop("UserStreamId"), "RTC.UserStreamId is required"),
        (
            lambda b: b.update(AdvancedConfig={"MaxIdleTime": 5}),
            "AdvancedConfig.MaxIdleTime must be between 10 and 1800",
        ),
        (
            lambda b: b.update(AdvancedConfig={"CommunicationMode": 1}),
            "AdvancedConfig.CommunicationMode must be one of 0, 2",
        ),
        (
            lambda b: b.update(MessageHistory={"Messages": [{"Role": "system", "Content": "x"}]}),
            "MessageHistory.Messages[0].Role must be one of assistant, user",
        ),
        (
            lambda b: b.update(MessageHistory={"WindowSize": 501}),
            "MessageHistory.WindowSize must be between 0 and 500",
        ),
        (
            lambda b: b.update(VAD={"TurnDetectConfig": {"SilenceSegmentation": 100}}),
            "VAD.TurnDetectConfig.SilenceSegmentation must be between 200 and 2000",
        ),
        (lambda b: b.update(CallbackConfig={"ASRResult": 2}), "CallbackConfig.ASRResult must be one of 0, 1"),
    ],
)
async def test_create_schema_messages(zego: Zego, mutate: Any, message: str) -> None:
    body: dict[str, Any] = {"AgentId": "agent_1", "UserId": "user_1", "RTC": zego.rtc()}
    mutate(body)
    envelope = await zego.call("CreateAgentInstance", body)
    assert (envelope["Code"], envelope["Message"]) == (410000003, message)


async def test_rtc_ids_allow_dots(zego: Zego) -> None:
    rtc = {"RoomId": "room.1", "AgentStreamId": "a.s", "AgentUserId": "a.u", "UserStreamId": "u.s"}
    await zego.ok("CreateAgentInstance", {"AgentId": "agent_1", "UserId": "user_1", "RTC": rtc})


async def test_digital_human_instance_returns_its_config(zego: Zego) -> None:
    rtc = zego.rtc("room_dh")
    data = await zego.ok(
        "CreateDigitalHumanAgentInstance",
        {"AgentId": "agent_1", "UserId": "user_1", "RTC": rtc, "DigitalHuman": {"DigitalHumanId": DH_ID}},
    )
    assert INSTANCE_ID.fullmatch(data["AgentInstanceId"])
    raw = base64.b64decode(data["DigitalHumanConfig"]).decode()
    assert raw == json.dumps(
        {
            "DigitalHumanId": DH_ID,
            "Streams": [
                {
                    "RoomId": "room_dh",
                    "StreamId": rtc["AgentStreamId"],
                    "EncodeCode": "H264",
                    "ConfigId": "web",
                }
            ],
        },
        separators=(",", ":"),
    )
    mobile = await zego.create_dh(DigitalHuman={"DigitalHumanId": DH_ID, "ConfigId": "mobile"})
    streams = json.loads(base64.b64decode(mobile["DigitalHumanConfig"]))["Streams"]
    assert streams[0]["ConfigId"] == "mobile"


@pytest.mark.parametrize(
    ("digital_human", "code"),
    [
        (None, 410000003),
        ({}, 410000014),
        ({"DigitalHumanId": ""}, 410000014),
        ({"DigitalHumanId": DH_ID, "ConfigId": "tv"}, 410001026),
        ({"DigitalHumanId": DH_ID, "EncodeCode": "H265"}, 410000014),
    ],
)
async def test_digital_human_parameters(zego: Zego, digital_human: dict[str, Any] | None, code: int) -> None:
    body = {"AgentId": "agent_1", "UserId": "user_1", "RTC": zego.rtc(), "DigitalHuman": digital_human}
    assert await zego.code("CreateDigitalHumanAgentInstance", body) == code


async def test_digital_human_with_disable_tts_fails(zego: Zego) -> None:
    envelope = await zego.call(
        "CreateDigitalHumanAgentInstance",
        {
            "AgentId": "agent_1",
            "UserId": "user_1",
            "RTC": zego.rtc(),
            "DigitalHuman": {"DigitalHumanId": DH_ID},
            "AdvancedConfig": {"DisableTTS": True},
        },
    )
    assert envelope["Code"] == 410001028
    assert "DisableTTS" in envelope["Message"]


async def test_live_digital_human_over_rtc(zego: Zego) -> None:
    rtc = zego.rtc("live_room", live=True)
    data = await zego.ok(
        "CreateLiveDigitalHumanAgentInstance",
        {"AgentId": "agent_1", "RTC": rtc, "DigitalHuman": {"DigitalHumanId": DH_ID}},
    )
    streams = json.loads(base64.b64decode(data["DigitalHumanConfig"]))["Streams"]
    assert streams[0]["RoomId"] == "live_room" and streams[0]["StreamId"] == rtc["AgentStreamId"]
    iid = data["AgentInstanceId"]
    # Live instances are driven by TTS only; the LLM loop is refused.
    await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "welcome"})
    for action in (
        "SendAgentInstanceLLM",
        "InterruptAgentInstance",
        "StartListening",
        "GetAgentInstanceMsgList",
    ):
        assert await zego.code(action, {"AgentInstanceId": iid, "Text": "x"}) == 410001049, action
    await zego.ok("DeleteAgentInstance", {"AgentInstanceId": iid})


async def test_live_digital_human_cdn_wins_over_rtc(zego: Zego) -> None:
    rtc = zego.rtc(live=True)
    first = await zego.ok(
        "CreateLiveDigitalHumanAgentInstance",
        {
            "AgentId": "agent_1",
            "RTC": rtc,
            "CDN": {"Url": "rtmp://push.example.com/live/key"},
            "DigitalHuman": {"DigitalHumanId": DH_ID},
        },
    )
    assert json.loads(base64.b64decode(first["DigitalHumanConfig"]))["Streams"] == []
    # RTC was ignored, so its ids are still free.
    await zego.ok(
        "CreateLiveDigitalHumanAgentInstance",
        {"AgentId": "agent_1", "RTC": rtc, "DigitalHuman": {"DigitalHumanId": DH_ID}},
    )


async def test_live_digital_human_needs_rtc_or_cdn(zego: Zego) -> None:
    body = {"AgentId": "agent_1", "DigitalHuman": {"DigitalHumanId": DH_ID}}
    envelope = await zego.call("CreateLiveDigitalHumanAgentInstance", body)
    assert (envelope["Code"], envelope["Message"]) == (410000003, "RTC or CDN is required")
    envelope = await zego.call("CreateLiveDigitalHumanAgentInstance", {**body, "CDN": {}})
    assert envelope["Message"] == "CDN.Url is required"


async def test_voice_concurrency_limit(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(voice_instance_limit=2)
    await zego.register()
    first = await zego.create_voice()
    await zego.create_voice()
    body = {"AgentId": "agent_1", "UserId": "user_1", "RTC": zego.rtc()}
    assert await zego.code("CreateAgentInstance", body) == 410000011
    # Digital humans have their own pool.
    await zego.create_dh()
    await zego.ok("DeleteAgentInstance", {"AgentInstanceId": first})
    await zego.ok("CreateAgentInstance", body)


async def test_digital_human_pool_is_shared_with_live(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(digital_human_instance_limit=2)
    await zego.register()
    await zego.create_dh()
    await zego.ok(
        "CreateLiveDigitalHumanAgentInstance",
        {"AgentId": "agent_1", "CDN": {"Url": "rtmp://x/y"}, "DigitalHuman": {"DigitalHumanId": DH_ID}},
    )
    body = {
        "AgentId": "agent_1",
        "UserId": "user_1",
        "RTC": zego.rtc(),
        "DigitalHuman": {"DigitalHumanId": DH_ID},
    }
    assert await zego.code("CreateDigitalHumanAgentInstance", body) == 410001031
    await zego.create_voice()
    state = (await zego.admin("GET", "/state")).json()
    assert state["counts"] == {
        "agents": 1,
        "instances": 3,
        "voice": 1,
        "digital_human": 1,
        "live_digital_human": 1,
    }


async def test_agent_stream_id_is_unique_across_running_instances(start_emulator: StartEmulator) -> None:
    """The strict option refuses RTC identity clashes at once (the default plays them out as ZEGO does:
    test_rtc_conflicts.py)."""
    zego = await start_emulator(rtc_conflicts="strict")
    await zego.register()
    rtc = zego.rtc("room_a")
    first = (await zego.ok("CreateAgentInstance", {"AgentId": "agent_1", "UserId": "u1", "RTC": rtc}))[
        "AgentInstanceId"
    ]
    # Even in another room, and with another agent user id.
    clash = {**zego.rtc("room_b"), "AgentStreamId": rtc["AgentStreamId"]}
    envelope = await zego.call("CreateAgentInstance", {"AgentId": "agent_1", "UserId": "u2", "RTC": clash})
    assert envelope["Code"] == 410000003 and envelope["Message"].startswith("RTC.AgentStreamId")
    dh_body = {"AgentId": "agent_1", "UserId": "u2", "RTC": clash, "DigitalHuman": {"DigitalHumanId": DH_ID}}
    assert await zego.code("CreateDigitalHumanAgentInstance", dh_body) == 410001030
    await zego.ok("DeleteAgentInstance", {"AgentInstanceId": first})
    await zego.ok("CreateAgentInstance", {"AgentId": "agent_1", "UserId": "u2", "RTC": clash})


async def test_agent_user_id_is_unique_and_not_the_user(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(rtc_conflicts="strict")
    await zego.register()
    rtc = zego.rtc()
    await zego.ok("CreateAgentInstance", {"AgentId": "agent_1", "UserId": "u1", "RTC": rtc})
    clash = {**zego.rtc(), "AgentUserId": rtc["AgentUserId"]}
    envelope = await zego.call("CreateAgentInstance", {"AgentId": "agent_1", "UserId": "u2", "RTC": clash})
    assert envelope["Code"] == 410000003 and envelope["Message"].startswith("RTC.AgentUserId")
    same_as_user = {**zego.rtc(), "AgentUserId": "u3"}
    envelope = await zego.call(
        "CreateAgentInstance", {"AgentId": "agent_1", "UserId": "u3", "RTC": same_as_user}
    )
    assert envelope["Message"] == "RTC.AgentUserId must differ from UserId"


async def test_delete_unknown_and_twice(zego: Zego) -> None:
    assert await zego.code("DeleteAgentInstance", {"AgentInstanceId": "1912122918452641792"}) == 410001002
    iid = await zego.create_voice()
    await zego.ok("DeleteAgentInstance", {"AgentInstanceId": iid})
    assert await zego.code("DeleteAgentInstance", {"AgentInstanceId": iid}) == 410001002
    deleted = await zego.events(iid, "AgentInstanceDeleted")
    assert deleted[0]["data"]["Code"] == 0 and deleted[0]["data"]["DeletedTimestamp"] > 0


async def test_admin_state_shows_instances(zego: Zego) -> None:
    iid = await zego.create_voice(user="alice")
    state = (await zego.admin("GET", "/state")).json()
    (inst,) = state["instances"]
    assert inst["AgentInstanceId"] == iid
    assert (inst["kind"], inst["status"], inst["UserId"], inst["RoomId"]) == (
        "voice",
        "IDLE",
        "alice",
        "room_1",
    )
    assert state["agents"] == [{"AgentId": "agent_1", "Name": "Test"}]
    assert "ApiKey" not in json.dumps(state)
