"""RTC identity clashes play out as ZEGO documents them (spec §6.1): the create succeeds, then an
Exception callback, then the instance's end. (The strict option is in test_instances.py.)"""

from __future__ import annotations

from typing import Any

from .conftest import DH_ID, StartEmulator, Zego


async def create(zego: Zego, user: str, rtc: dict[str, str], action: str = "CreateAgentInstance") -> str:
    body: dict[str, Any] = {"AgentId": "agent_1", "UserId": user, "RTC": rtc}
    if action != "CreateAgentInstance":
        body["DigitalHuman"] = {"DigitalHumanId": DH_ID}
    return str((await zego.ok(action, body))["AgentInstanceId"])


async def outcome(zego: Zego, instance_id: str, code: int) -> list[str]:
    """Wait for the instance's end; return its callback names in order, checking the codes."""
    [deleted] = await zego.wait_events(instance_id, "AgentInstanceDeleted")
    assert deleted["data"]["Code"] == code
    events = await zego.events(instance_id)
    [exception] = [e for e in events if e["event"] == "Exception"]
    assert exception["data"]["Code"] == code and exception["data"]["Message"]
    await zego.wait_gone(instance_id)
    return [e["event"] for e in events]


async def test_reused_agent_stream_id_fails_the_later_instance(zego: Zego) -> None:
    rtc = zego.rtc("room_a")
    first = await create(zego, "u1", rtc)
    clash = {**zego.rtc("room_b"), "AgentStreamId": rtc["AgentStreamId"]}
    later = await create(zego, "u2", clash)
    assert await outcome(zego, later, 1206) == ["AgentInstanceCreated", "Exception", "AgentInstanceDeleted"]
    # The earlier instance keeps running.
    assert (await zego.status(first))["Code"] == 0
    assert await zego.events(first, "Exception") == []


async def test_reused_agent_user_id_kicks_the_earlier_instance(zego: Zego) -> None:
    rtc = zego.rtc()
    earlier = await create(zego, "u1", rtc)
    later = await create(zego, "u2", {**zego.rtc(), "AgentUserId": rtc["AgentUserId"]})
    names = await outcome(zego, earlier, 1203)
    assert names[-2:] == ["Exception", "AgentInstanceDeleted"]
    assert (await zego.status(later))["Code"] == 0


async def test_agent_user_id_equal_to_the_user_ends_the_new_instance(zego: Zego) -> None:
    instance = await create(zego, "u3", {**zego.rtc(), "AgentUserId": "u3"})
    assert await outcome(zego, instance, 1203) == [
        "AgentInstanceCreated",
        "Exception",
        "AgentInstanceDeleted",
    ]


async def test_digital_human_stream_clash_is_still_the_documented_api_error(zego: Zego) -> None:
    rtc = zego.rtc()
    await create(zego, "u1", rtc)
    clash = {**zego.rtc(), "AgentStreamId": rtc["AgentStreamId"]}
    body = {"AgentId": "agent_1", "UserId": "u2", "RTC": clash, "DigitalHuman": {"DigitalHumanId": DH_ID}}
    assert await zego.code("CreateDigitalHumanAgentInstance", body) == 410001030


async def test_an_instance_deleted_before_its_clash_plays_out_is_left_alone(
    start_emulator: StartEmulator,
) -> None:
    # 100 emulated seconds to join (1 s at the tests' time scale): time to delete it first.
    zego = await start_emulator(created_callback_delay_ms=100_000)
    await zego.register()
    rtc = zego.rtc("room_a")
    await create(zego, "u1", rtc)
    later = await create(zego, "u2", {**zego.rtc("room_b"), "AgentStreamId": rtc["AgentStreamId"]})
    await zego.ok("DeleteAgentInstance", {"AgentInstanceId": later})
    [deleted] = await zego.wait_events(later, "AgentInstanceDeleted")
    assert deleted["data"]["Code"] == 0
    assert await zego.events(later, "Exception") == []
